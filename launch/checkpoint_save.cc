// Saving a checkpoint: the three-phase protocol of checkpoint.h, then
// pruning. Phase 1 (rank 0) makes checkpoints/.tmp_step_N; phase 2 (the
// writers) fill it; phase 3 (rank 0) adds the indexes and trainer state,
// checks that every tensor is there, renames it to step_N and replaces
// `latest`. Ranks agree after each phase (all_ok), so one failing rank
// makes every rank return an error and rank 0 discards the temp directory.
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc >= 2.28)
#include <fcntl.h>  // AT_FDCWD

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "launch/checkpoint.h"
#include "launch/checkpoint_tensors.h"
#include "moe/io/file_util.h"
#include "moe/io/model_weights.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

// Which shard files this rank writes (-1: none) and how many there are.
struct ShardPlan {
  int model_shards = 1, model_shard = -1;
  int optimizer_shards = 1, optimizer_shard = -1;
};

ShardPlan PlanShards(const CheckpointTopology& t) {
  ShardPlan plan;
  plan.model_shards = t.ep_size;
  plan.model_shard = t.writes_experts() ? t.ep_rank : -1;
  if (t.optimizer_sharded) {
    plan.optimizer_shards = t.world_size;
    plan.optimizer_shard = t.rank;
  } else {
    plan.optimizer_shards = plan.model_shards;
    plan.optimizer_shard = plan.model_shard;
  }
  return plan;
}

std::string ShardFile(const char* prefix, int shard, int shards) {
  return absl::StrFormat("%s-%05d-of-%05d.safetensors", prefix, shard + 1, shards);
}

absl::Status FsError(const std::string& path, const char* action, const std::error_code& ec) {
  return absl::InternalError(absl::StrCat(path, ": cannot ", action, ": ", ec.message()));
}

// Removes a directory tree by renaming it to a hidden name first, so that a
// crash midway never leaves a partial tree under a step_N name.
absl::Status RemoveTree(const fs::path& dir, const std::string& hidden_name) {
  std::error_code ec;
  const fs::path trash = dir.parent_path() / hidden_name;
  fs::remove_all(trash, ec);
  fs::rename(dir, trash, ec);
  if (ec) return FsError(dir.string(), "rename for deletion", ec);
  fs::remove_all(trash, ec);
  if (ec) return FsError(trash.string(), "remove", ec);
  return absl::OkStatus();
}

absl::Status Hook(const CheckpointSaveOptions& options, absl::string_view point) {
  return options.fault_hook ? options.fault_hook(point) : absl::OkStatus();
}

// Phase 1 (rank 0): an empty checkpoints/.tmp_step_N (a stale one from a
// crashed save is discarded).
absl::Status MakeTempDir(const fs::path& root, const fs::path& tmp) {
  std::error_code ec;
  const bool existed = fs::is_directory(root, ec);
  fs::create_directories(root, ec);
  if (ec) return FsError(root.string(), "create directory", ec);
  if (!existed) {
    if (absl::Status s = SyncParentDir(root.string()); !s.ok()) return s;
  }
  fs::remove_all(tmp, ec);
  if (ec) return FsError(tmp.string(), "remove stale directory", ec);
  fs::create_directory(tmp, ec);
  if (ec) return FsError(tmp.string(), "create directory", ec);
  return SyncParentDir(tmp.string());
}

// Phase 2: this rank's model and optimizer shards.
absl::Status WriteShards(const fs::path& tmp, const ShardPlan& plan, Model& model,
                         Optimizer& optimizer, const CheckpointTopology& topology,
                         const CheckpointSaveOptions& options) {
  if (plan.model_shard >= 0) {
    SaveWeightsOptions o;
    o.selection = topology.writes_replicated() ? WeightSelection::kAll : WeightSelection::kExperts;
    o.metadata["switchboard"] = "model weights";
    o.checksums = SafetensorsChecksums::kXxh3;
    const std::string path = (tmp / ShardFile("model", plan.model_shard, plan.model_shards)).string();
    if (absl::Status s = SaveModelWeights(model, path, o); !s.ok()) return s;
    if (absl::Status s = Hook(options, "model_written"); !s.ok()) return s;
  }
  if (plan.optimizer_shard >= 0) {
    absl::StatusOr<std::vector<NamedState>> state = NamedOptimizerState(optimizer, model.Parameters());
    if (!state.ok()) return state.status();
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const NamedState& s : *state) {
      const bool mine = topology.optimizer_sharded ||
                        (s.param->is_expert() ? topology.writes_experts()
                                              : topology.writes_replicated());
      if (mine) tensors.emplace_back(s.name, s.view);
    }
    const std::string path =
        (tmp / ShardFile("optimizer", plan.optimizer_shard, plan.optimizer_shards)).string();
    const std::map<std::string, std::string> metadata = {
        {"switchboard", "optimizer state"}, {"optimizer_step", absl::StrCat(optimizer.step())}};
    if (absl::Status s = WriteSafetensors(path, tensors, metadata, std::nullopt,
                                          SafetensorsChecksums::kXxh3);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Hook(options, "optimizer_written"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Phase 3: `index_file` over shards prefix-0000i-of-n, after reading every
// shard back (each tensor against the checksum its writer recorded: what
// reached the filesystem is what was meant) and checking that no name is
// written twice and, when `expected` is given, that the shards hold exactly
// those names.
absl::Status WriteIndex(const fs::path& tmp, const char* prefix, int shards,
                        const std::string& index_file, const std::set<std::string>* expected) {
  std::map<std::string, std::string> weight_map;
  for (int i = 0; i < shards; ++i) {
    const std::string shard = ShardFile(prefix, i, shards);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open((tmp / shard).string());
    if (!file.ok()) return file.status();
    if (!(*file)->checksummed()) {
      return absl::InternalError(absl::StrCat((tmp / shard).string(), ": written without checksums"));
    }
    if (absl::Status s = (*file)->VerifyChecksums(); !s.ok()) {
      return absl::DataLossError(absl::StrCat("reading the new checkpoint back: ", s.message()));
    }
    for (const std::string& name : (*file)->names()) {
      auto [it, fresh] = weight_map.emplace(name, shard);
      if (!fresh) {
        return absl::InternalError(absl::StrCat(tmp.string(), ": tensor ", name, " is in both ",
                                                it->second, " and ", shard));
      }
    }
  }
  if (expected) {
    std::vector<std::string> missing, extra;
    for (const std::string& name : *expected)
      if (!weight_map.count(name)) missing.push_back(name);
    for (const auto& entry : weight_map)
      if (!expected->count(entry.first)) extra.push_back(entry.first);
    if (!missing.empty() || !extra.empty()) {
      return absl::InternalError(absl::StrCat(
          tmp.string(), ": the ", prefix, " shards are incomplete: ", missing.size(),
          " missing (", missing.empty() ? "" : missing.front(), "), ", extra.size(),
          " unexpected (", extra.empty() ? "" : extra.front(), ")"));
    }
  }
  return WriteSafetensorsIndex((tmp / index_file).string(), weight_map);
}

absl::Status WriteTrainerState(const fs::path& path, const switchboard::TrainerState& state) {
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(state, &text)) {
    return absl::InternalError(absl::StrCat(path.string(), ": cannot print the trainer state"));
  }
  text = absl::StrCat(
      "# switchboard.TrainerState (configs/switchboard.proto, docs/checkpoints.md).\n", text);
  return ReplaceFileAtomically(path.string(), [&](int fd, const std::string& tmp) {
    return WriteAll(fd, text.data(), text.size(), tmp);
  });
}

// tmp becomes final in one rename. An existing final (from a run that went
// past this step and was resumed from an earlier checkpoint) is swapped out
// atomically, then deleted. Where the filesystem cannot swap (EINVAL: some
// NFS servers), the old one is deleted first, unless `latest` names it.
absl::Status Publish(const fs::path& tmp, const fs::path& final_dir) {
  std::error_code ec;
  if (fs::exists(final_dir, ec)) {
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
      fs::remove_all(tmp, ec);  // the old step_N, now under the temp name
      return SyncParentDir(final_dir.string());
    }
    const int err = errno;
    absl::StatusOr<std::string> latest =
        ReadSmallFile((final_dir.parent_path() / "latest").string(), 4096);
    const bool named = latest.ok() && absl::StripAsciiWhitespace(*latest) ==
                                          final_dir.filename().string();
    if ((err != EINVAL && err != ENOSYS && err != EOPNOTSUPP) || named) {
      errno = err;
      return ErrnoError(final_dir.string(), absl::StrCat("swap in ", tmp.string()));
    }
    if (absl::Status s = RemoveTree(final_dir, ".trash_" + final_dir.filename().string());
        !s.ok()) {
      return s;
    }
  }
  fs::rename(tmp, final_dir, ec);
  if (ec) return FsError(tmp.string(), "rename to step directory", ec);
  return SyncParentDir(final_dir.string());
}

// Keeps the keep_last newest checkpoints up to `step` (never `latest`'s,
// which is step itself); later steps belong to an abandoned run and are
// replaced when this run reaches them. Also clears stale temp directories.
absl::Status Prune(const fs::path& root, int64_t step, int keep_last) {
  std::vector<int64_t> steps;
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp_step_", 0) == 0 || name.rfind(".trash_", 0) == 0) stale.push_back(e.path());
    const std::optional<int64_t> n = ParseStepDirName(name);
    std::error_code type_ec;
    if (n && *n <= step && e.is_directory(type_ec)) steps.push_back(*n);
  }
  if (ec) return FsError(root.string(), "list", ec);
  for (const fs::path& p : stale) fs::remove_all(p, ec);
  if (keep_last <= 0) return absl::OkStatus();
  std::sort(steps.rbegin(), steps.rend());
  for (size_t i = static_cast<size_t>(keep_last); i < steps.size(); ++i) {
    const std::string name = StepDirName(steps[i]);
    if (absl::Status s = RemoveTree(root / name, ".trash_" + name); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Finalize(const fs::path& root, const fs::path& tmp, const std::string& dir_name,
                      const switchboard::TrainerState& state, Model& model, Optimizer& optimizer,
                      const ShardPlan& plan, const CheckpointTopology& topology,
                      const CheckpointSaveOptions& options) {
  const std::vector<Parameter*> params = model.Parameters();
  const int64_t experts = model.options().router.num_experts;
  const std::set<std::string> weights = AllWeightNames(model.WeightTensors(), experts);
  if (absl::Status s = WriteIndex(tmp, "model", plan.model_shards, kSafetensorsIndexFile, &weights);
      !s.ok()) {
    return s;
  }
  // ZeRO-1: rank 0 sees only the state it owns, so it cannot list the rest.
  std::set<std::string> state_names;
  if (!topology.optimizer_sharded) {
    absl::StatusOr<std::vector<NamedState>> named = NamedOptimizerState(optimizer, params);
    if (!named.ok()) return named.status();
    state_names = AllStateNames(*named, params, experts);
  }
  if (absl::Status s = WriteIndex(tmp, "optimizer", plan.optimizer_shards, kOptimizerIndexFile,
                                  topology.optimizer_sharded ? nullptr : &state_names);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Hook(options, "indexes_written"); !s.ok()) return s;
  if (absl::Status s = WriteTrainerState(tmp / kTrainerStateFile, state); !s.ok()) return s;
  if (absl::Status s = Hook(options, "state_written"); !s.ok()) return s;
  if (absl::Status s = Publish(tmp, root / dir_name); !s.ok()) return s;
  if (absl::Status s = Hook(options, "renamed"); !s.ok()) return s;
  const std::string latest = absl::StrCat(dir_name, "\n");
  if (absl::Status s = ReplaceFileAtomically(
          (root / "latest").string(),
          [&](int fd, const std::string& t) { return WriteAll(fd, latest.data(), latest.size(), t); });
      !s.ok()) {
    return s;
  }
  return Hook(options, "latest_updated");
}

}  // namespace

std::string CheckpointsDir(const std::string& run_dir) {
  return (fs::path(run_dir) / "checkpoints").string();
}

absl::Status SaveCheckpoint(const std::string& run_dir, switchboard::TrainerState state,
                            Model& model, Optimizer& optimizer, const CheckpointTopology& topology,
                            const CheckpointSaveOptions& options) {
  SB_CHECK(topology.ep_size >= 1 && topology.world_size % topology.ep_size == 0 &&
           (topology.rank != 0 || (topology.ep_rank == 0 && topology.dp_rank == 0)))
      << "inconsistent CheckpointTopology: rank " << topology.rank << " of " << topology.world_size
      << ", ep_rank " << topology.ep_rank << " of " << topology.ep_size << ", dp_rank "
      << topology.dp_rank;
  const ShardPlan plan = PlanShards(topology);
  const std::string dir_name = StepDirName(state.step());
  const fs::path root = CheckpointsDir(run_dir);
  const fs::path tmp = root / (".tmp_" + dir_name);
  auto& layout = *state.mutable_layout();
  layout.set_world_size(topology.world_size);
  layout.set_expert_parallel_size(topology.ep_size);
  layout.set_grad_accum_steps(state.config().train().grad_accum_steps());
  layout.set_optimizer_sharded(topology.optimizer_sharded);
  layout.set_model_shards(plan.model_shards);
  layout.set_optimizer_shards(plan.optimizer_shards);
  state.set_format_version(kCheckpointFormatVersion);
  const bool chief = topology.writes_replicated();
  const std::string what = absl::StrCat("checkpoint ", (root / dir_name).string());

  // Phase 1.
  absl::Status mine = chief ? MakeTempDir(root, tmp) : absl::OkStatus();
  if (mine.ok()) mine = Hook(options, "tmp_created");
  if (!topology.AllOk(mine.ok())) {
    std::error_code ec;
    if (chief) fs::remove_all(tmp, ec);
    return mine.ok() ? absl::AbortedError(absl::StrCat(
                           what, ": another rank failed to start the save (see its error); "
                                 "nothing was published"))
                     : mine;
  }
  // Phase 2.
  mine = WriteShards(tmp, plan, model, optimizer, topology, options);
  if (!topology.AllOk(mine.ok())) {
    std::error_code ec;
    if (chief) fs::remove_all(tmp, ec);
    return mine.ok() ? absl::AbortedError(absl::StrCat(
                           what, ": another rank failed to write its files (see its error); "
                                 "nothing was published"))
                     : mine;
  }
  // Phase 3.
  if (chief) {
    mine = Finalize(root, tmp, dir_name, state, model, optimizer, plan, topology, options);
    std::error_code ec;
    if (!mine.ok()) fs::remove_all(tmp, ec);  // no-op once renamed
  }
  if (!topology.AllOk(mine.ok())) {
    return mine.ok() ? absl::AbortedError(absl::StrCat(
                           what, ": another rank (rank 0) failed to publish it (see its error)"))
                     : mine;
  }
  if (chief) {
    if (absl::Status s = Prune(root, state.step(), options.keep_last); !s.ok()) {
      std::fprintf(stderr, "warning: pruning old checkpoints: %s\n", std::string(s.message()).c_str());
    }
  }
  return absl::OkStatus();
}

}  // namespace sb
