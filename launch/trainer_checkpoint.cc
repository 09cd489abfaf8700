// The trainer's side of checkpoints: what it saves (TrainerState), how a
// resumed run picks up its step, data cursor and counters, and how a run
// that stops early (a signal, a failure after the first step, a divergence)
// decides what to save. The directory protocol itself is launch/checkpoint.h.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "launch/commands.h"
#include "launch/stop_signals.h"
#include "launch/trainer.h"

namespace sb {

namespace fs = std::filesystem;

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

namespace {

// `status` with another message, payloads kept (they carry the exit code).
absl::Status WithMessage(const absl::Status& status, absl::string_view message) {
  absl::Status out(status.code(), message);
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

}  // namespace

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
  last_checkpoint_step_ = step;
  if (topology_.rank == 0) {
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    std::printf("checkpoint: %s/%s (%.1f s)\n", CheckpointsDir(run_dir_).c_str(),
                StepDirName(step).c_str(), took.count());
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

namespace {

// `error` (a failed resume from `latest`) plus, when the checkpoint that
// `latest` names does not verify (or `latest` itself is broken), the newest
// older one that does and how to resume from it. Reads whole checkpoints:
// rank 0 only, on the error path.
absl::Status WithVerifiedFallback(const absl::Status& error, const std::string& run_dir,
                                  const std::string* latest_dir) {
  int64_t before = std::numeric_limits<int64_t>::max();
  if (latest_dir) {
    if (VerifyCheckpoint(*latest_dir).ok()) return error;  // intact: the config or a rank failed
    const std::optional<int64_t> step = ParseStepDirName(fs::path(*latest_dir).filename().string());
    if (step) before = *step;
  } else if (!HasCheckpoint(run_dir)) {
    return error;
  }
  const std::optional<std::string> older = NewestVerifiedCheckpoint(run_dir, before);
  if (!older) {
    return absl::Status(error.code(), absl::StrCat(error.message(), "\nno older checkpoint in ",
                                                   CheckpointsDir(run_dir), " verifies either"));
  }
  const std::string name = fs::path(*older).filename().string();
  return absl::Status(error.code(),
                      absl::StrCat(error.message(), "\nthe newest ",
                                   latest_dir ? "older " : "", "checkpoint that verifies is ",
                                   *older, ": resume from it with --resume_from ", name));
}

}  // namespace

absl::Status Trainer::Resume() {
  absl::StatusOr<std::string> dir = LatestCheckpoint(run_dir_);
  if (!dir.ok()) {
    return topology_.rank == 0 ? WithVerifiedFallback(dir.status(), run_dir_, nullptr)
                               : dir.status();
  }
  absl::Status s = ResumeFrom(*dir);
  if (s.ok() || topology_.rank != 0) return s;
  return WithVerifiedFallback(s, run_dir_, &*dir);
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
  streak_start_step_ = start_step_ - nonfinite_streak_;
  last_checkpoint_step_ = start_step_;
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

void Trainer::NoteWrite(const absl::Status& status) {
  if (status.ok() || !chief() || !run_files_error_.ok()) return;
  run_files_error_ = status;
  std::fprintf(stderr, "switchboard train: %s: stopping after this step\n",
               std::string(status.message()).c_str());
}

Trainer::StopPoll Trainer::PollStop() {
  const double failed = chief() && !run_files_error_.ok() ? 1.0 : 0.0;
  const std::vector<double> sums =
      AllReduceSum(grid_->world(), {StopSignals::received() != 0 ? 1.0 : 0.0, failed});
  return {sums[0] > 0, sums[1] > 0};
}

std::string Trainer::SaveBlocker() const {
  if (nonfinite_streak_ == 0) return "";
  return absl::StrFormat(
      "the last %d steps (since step %d) had a non-finite loss or gradient norm, and a "
      "checkpoint now would hold the weights that produced them",
      nonfinite_streak_, streak_start_step_ + 1);
}

std::string Trainer::DivergenceAdvice() const {
  const std::string since =
      absl::StrFormat("the non-finite steps began at step %d", streak_start_step_ + 1);
  if (run_dir_.empty()) return absl::StrCat("start again (", since, "; no run directory)");
  if (last_checkpoint_step_ < 0) {
    return absl::StrCat("start the run again: no checkpoint was saved before ", since);
  }
  const std::string name = StepDirName(last_checkpoint_step_);
  return absl::StrCat("resume from ", CheckpointsDir(run_dir_), "/", name,
                      ", the last checkpoint before ", since,
                      " (none is saved during them): train --resume_from ", name);
}

absl::Status Trainer::SaveBeforeExit(int64_t steps_done, absl::Status status) {
  const bool stopped_by_signal = status.ok();
  // With several ranks only an error that every rank returns here can be
  // followed by a (collective) save; the others end the job.
  if (!stopped_by_signal && grid_->world_size() > 1 && !IsErrorOnAllRanks(status)) return status;
  absl::Status saved;
  std::string note;
  const std::string last =
      last_checkpoint_step_ < 0
          ? std::string("there is no checkpoint")
          : absl::StrCat("the last checkpoint is ", CheckpointsDir(run_dir_), "/",
                         StepDirName(last_checkpoint_step_));
  if (run_dir_.empty()) {
    note = "nothing saved (no run directory)";
  } else if (steps_done == last_checkpoint_step_) {
    note = absl::StrCat("checkpoint ", CheckpointsDir(run_dir_), "/", StepDirName(steps_done),
                        " holds the state after step ", steps_done);
  } else if (steps_done == start_step_) {
    note = absl::StrCat("no step completed, nothing new to save; ", last);
  } else if (const std::string blocker = SaveBlocker(); !blocker.empty()) {
    note = absl::StrCat("no checkpoint saved: ", blocker, "; ", last);
  } else {
    saved = WriteCheckpoint(steps_done);
    note = saved.ok() ? absl::StrCat("saved checkpoint ", CheckpointsDir(run_dir_), "/",
                                     StepDirName(steps_done))
                      : absl::StrCat("and saving a checkpoint failed: ", saved.message());
  }
  if (!stopped_by_signal) return WithMessage(status, absl::StrCat(status.message(), "\n", note));
  if (saved.ok()) StopSignals::ExitOnNextSignal(kExitPreempted);
  if (topology_.rank == 0) {
    std::printf("stopped by %s after step %lld of %d: %s\n",
                stopped_by_signal_ > 0 ? StopSignalName(stopped_by_signal_) : "a signal to another rank",
                static_cast<long long>(steps_done), static_cast<int>(config_.train().steps()),
                note.c_str());
    std::fflush(stdout);
  }
  return saved;  // a failed save: exit 1, as for any failed save
}

}  // namespace sb
