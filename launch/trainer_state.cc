// A checkpoint's trainer_state.textproto: its directory name and the checks
// that make the state trustworthy before anything is loaded (docs/
// checkpoints.md, "Resuming", step 2). Kept apart from the loader so that the
// fuzz target (trainer_state_fuzz.cc) links it without a model.
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "launch/checkpoint.h"
#include "moe/io/file_util.h"

namespace sb {
namespace {

constexpr size_t kMaxStateBytes = 16 << 20;

}  // namespace

std::string StepDirName(int64_t step) { return absl::StrCat("step_", step); }

std::optional<int64_t> ParseStepDirName(absl::string_view name) {
  if (name.size() < 6 || name.size() > 5 + 18 || name.substr(0, 5) != "step_") return std::nullopt;
  int64_t step = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return std::nullopt;
    step = step * 10 + (c - '0');
  }
  if (StepDirName(step) != name) return std::nullopt;  // leading zeros
  return step;
}

absl::StatusOr<switchboard::TrainerState> ParseTrainerState(absl::string_view text,
                                                            const std::string& path,
                                                            std::optional<int64_t> dir_step) {
  switchboard::TrainerState state;
  if (absl::Status s = ParseTextMessage(std::string(text), path, &state); !s.ok()) return s;
  std::vector<std::string> bad;
  auto require = [&](bool ok, const char* field, int64_t value, const char* rule) {
    if (!ok) bad.push_back(absl::StrCat(field, " = ", value, " ", rule));
  };
  require(state.format_version() >= 1 && state.format_version() <= kCheckpointFormatVersion,
          "format_version", state.format_version(),
          absl::StrCat("is not a version this build reads (1..", kCheckpointFormatVersion, ")")
              .c_str());
  require(state.step() >= 0, "step", state.step(), "must be >= 0");
  require(state.tokens_seen() >= 0, "tokens_seen", state.tokens_seen(), "must be >= 0");
  require(state.micro_batches_consumed() >= 0, "micro_batches_consumed",
          state.micro_batches_consumed(), "must be >= 0");
  require(state.optimizer_step() >= 0 && state.optimizer_step() <= state.step(), "optimizer_step",
          state.optimizer_step(), "must be in [0, step]");
  require(state.nonfinite_streak() >= 0, "nonfinite_streak", state.nonfinite_streak(), "must be >= 0");
  require(state.skipped_steps() >= 0, "skipped_steps", state.skipped_steps(), "must be >= 0");
  const auto& layout = state.layout();
  require(layout.world_size() >= 1, "layout.world_size", layout.world_size(), "must be >= 1");
  require(layout.expert_parallel_size() >= 1, "layout.expert_parallel_size",
          layout.expert_parallel_size(), "must be >= 1");
  require(layout.grad_accum_steps() >= 1, "layout.grad_accum_steps", layout.grad_accum_steps(),
          "must be >= 1");
  if (!state.has_config()) bad.push_back("config is missing");
  if (dir_step && *dir_step != state.step()) {
    bad.push_back(absl::StrCat("step = ", state.step(), " but the directory is ",
                               StepDirName(*dir_step)));
  }
  if (bad.empty() && layout.world_size() >= 1) {
    if (absl::Status s = ValidateConfig(state.config(), layout.world_size()); !s.ok())
      bad.push_back(absl::StrCat("config: ", s.message()));
  }
  if (!bad.empty()) {
    return absl::DataLossError(absl::StrCat(path, ": ", absl::StrJoin(bad, "; ")));
  }
  return state;
}

absl::StatusOr<switchboard::TrainerState> ReadTrainerState(const std::string& step_dir) {
  const std::filesystem::path dir(step_dir);
  const std::string path = (dir / kTrainerStateFile).string();
  absl::StatusOr<std::string> text = ReadSmallFile(path, kMaxStateBytes);
  if (!text.ok()) return text.status();
  return ParseTrainerState(*text, path, ParseStepDirName(dir.filename().string()));
}

}  // namespace sb
