// Checking a checkpoint without loading it: every file read and every
// tensor hashed against the checksum its writer recorded. Used when `latest`
// does not load, to name the newest older checkpoint that does
// (docs/checkpoints.md, "Integrity"), and to resolve `train --resume_from`.
#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "launch/checkpoint.h"

namespace sb {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<SafetensorsSet>> OpenCheckpointTensors(const std::string& step_dir,
                                                                      const char* index_file,
                                                                      int format_version) {
  absl::StatusOr<std::unique_ptr<SafetensorsSet>> set =
      SafetensorsSet::Open((fs::path(step_dir) / index_file).string());
  if (!set.ok() || format_version < 2) return set;
  for (const auto& file : (*set)->files()) {
    if (!file->checksummed()) {
      return absl::DataLossError(absl::StrCat(
          file->path(), ": carries no checksums, but ", step_dir, "/", kTrainerStateFile,
          " says format_version ", format_version, ", whose shards all do (the file was "
          "replaced or its header rewritten)"));
    }
  }
  return set;
}

absl::Status VerifyCheckpoint(const std::string& step_dir) {
  absl::StatusOr<switchboard::TrainerState> state = ReadTrainerState(step_dir);
  if (!state.ok()) return state.status();
  for (const char* index : {kSafetensorsIndexFile, kOptimizerIndexFile}) {
    absl::StatusOr<std::unique_ptr<SafetensorsSet>> set =
        OpenCheckpointTensors(step_dir, index, state->format_version());
    if (!set.ok()) return set.status();
    for (const auto& file : (*set)->files())
      if (absl::Status s = file->VerifyChecksums(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::optional<std::string> NewestVerifiedCheckpoint(const std::string& run_dir,
                                                    int64_t before_step) {
  const fs::path root = CheckpointsDir(run_dir);
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const std::optional<int64_t> n = ParseStepDirName(e.path().filename().string());
    std::error_code type_ec;
    if (n && *n < before_step && e.is_directory(type_ec)) steps.push_back(*n);
  }
  std::sort(steps.rbegin(), steps.rend());
  for (int64_t step : steps) {
    const std::string dir = (root / StepDirName(step)).string();
    if (VerifyCheckpoint(dir).ok()) return dir;
  }
  return std::nullopt;
}

absl::StatusOr<std::string> ResolveResumeFrom(const std::string& run_dir, const std::string& name) {
  const fs::path root = CheckpointsDir(run_dir);
  std::string trimmed = name;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const fs::path given(trimmed);
  const std::string base = given.filename().string();
  std::error_code ec;
  // A bare step_<N>, or a path whose directory is this run's checkpoints/.
  const bool in_run = given.parent_path().empty() || fs::equivalent(given.parent_path(), root, ec);
  if (!ParseStepDirName(base) || !in_run) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--resume_from ", name, ": expected a checkpoint of this run directory: step_<N> or ",
        (root / "step_<N>").string()));
  }
  const fs::path dir = root / base;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("--resume_from ", name, ": ", dir.string(),
                                            " does not exist"));
  }
  return dir.string();
}

}  // namespace sb
