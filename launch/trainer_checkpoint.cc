// The trainer's side of checkpoints: what it saves (TrainerState) and how a
// resumed run picks up its step, data cursor and counters. The directory
// protocol itself is launch/checkpoint.h.
#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "launch/trainer.h"

namespace sb {

int64_t Trainer::FirstMicroBatch(int64_t step) const {
  // After a resume with another world * grad_accum the cursor continues
  // from the saved count, not from step * (micro-batches per step).
  const int64_t per_step = int64_t{topology_.world_size} * config_.train().grad_accum_steps();
  return cursor_base_ + (step - start_step_) * per_step;
}

switchboard::TrainerState Trainer::CaptureState(int64_t step) const {
  switchboard::TrainerState state;
  state.set_step(step);
  state.set_tokens_seen(tokens_seen_);
  state.set_micro_batches_consumed(FirstMicroBatch(step));
  state.set_seed(config_.train().seed());
  state.set_optimizer_step(optimizer_->step());
  state.set_nonfinite_streak(nonfinite_streak_);
  state.set_skipped_steps(skipped_steps_);
  *state.mutable_config() = ResolvedConfig(config_);
  return state;  // SaveCheckpoint adds the layout
}

absl::Status Trainer::WriteCheckpoint(int64_t step) {
  CheckpointSaveOptions options;
  options.keep_last = config_.checkpoint().keep_last();
  const auto start = std::chrono::steady_clock::now();
  absl::Status s =
      sb::SaveCheckpoint(run_dir_, CaptureState(step), *model_, *optimizer_, topology_, options);
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("checkpoint at step ", step, " failed (the previous "
                                               "one is intact): ", s.message()));
  }
  if (topology_.rank == 0) {
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    std::printf("checkpoint: %s/%s (%.1f s)\n", CheckpointsDir(run_dir_).c_str(),
                StepDirName(step).c_str(), took.count());
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

absl::Status Trainer::Resume() {
  absl::StatusOr<std::string> dir = LatestCheckpoint(run_dir_);
  if (!dir.ok()) return dir.status();
  return ResumeFrom(*dir);
}

absl::Status Trainer::ResumeFrom(const std::string& step_dir) {
  absl::StatusOr<switchboard::TrainerState> state =
      LoadCheckpoint(step_dir, config_, *model_, *optimizer_, topology_);
  if (!state.ok()) return state.status();
  start_step_ = state->step();
  cursor_base_ = state->micro_batches_consumed();
  tokens_seen_ = state->tokens_seen();
  nonfinite_streak_ = state->nonfinite_streak();
  skipped_steps_ = state->skipped_steps();
  resumed_ = true;
  if (topology_.rank == 0) {
    const auto& layout = state->layout();
    std::printf("resumed from %s: step %lld, %lld micro-batches and %lld tokens consumed "
                "(saved by %d ranks, expert-parallel %d, grad_accum %d)\n",
                step_dir.c_str(), static_cast<long long>(start_step_),
                static_cast<long long>(cursor_base_), static_cast<long long>(tokens_seen_),
                layout.world_size(), layout.expert_parallel_size(), layout.grad_accum_steps());
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

}  // namespace sb
