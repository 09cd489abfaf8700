// Checkpoint directories (docs/checkpoints.md):
//
//   run_dir/checkpoints/
//     latest                                  "step_N\n", replaced atomically
//     step_N/
//       trainer_state.textproto               switchboard.TrainerState
//       model.safetensors.index.json          HF index over the model shards
//       model-00001-of-0000P.safetensors      weights; shard i from EP rank i-1 of
//                                             the first data-parallel replica,
//                                             shard 1 also holds the replicated ones
//       optimizer.safetensors.index.json      the same for optimizer state
//       optimizer-00001-of-0000Q.safetensors
//
// Tensor names carry global expert ids (weights as moe/io/model_weights.h;
// optimizer state as "<slice name>.<slot>"), so any data x expert layout
// loads any other. A save goes to checkpoints/.tmp_step_N, every file and
// directory fsync'd, and becomes step_N by one rename once every rank has
// written its part; only then is `latest` replaced and old checkpoints
// pruned. A crash at any point leaves `latest` naming a complete checkpoint.
//
// Ranks meet only through CheckpointTopology::all_ok, so this file knows no
// MPI; the trainer wires it to the process grid. Every rank must reach the
// same files (a shared filesystem).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "configs/config.h"
#include "moe/io/safetensors_set.h"
#include "moe/model.h"
#include "optim/optimizer.h"

namespace sb {

// Where this rank sits in the job, as far as checkpoints care.
struct CheckpointTopology {
  int rank = 0;        // world rank
  int world_size = 1;  // ranks in the job
  int ep_rank = 0;     // rank in its expert-parallel group: holds experts [ep_rank*E/ep, ...)
  int ep_size = 1;     // parallel.expert_parallel_size
  int dp_rank = 0;     // which expert-parallel group (data-parallel replica) this rank is in
  // ZeRO-1: Optimizer::State() lists only the state this rank owns, and
  // every rank writes it. Otherwise the weights' writers write the state too.
  bool optimizer_sharded = false;
  // Collective over all ranks: the AND of every rank's `ok`. Every rank calls
  // it at the same points (3 per save, 1 per load), so it is also the only
  // barrier needed. Null means a single process (returns ok).
  std::function<bool(bool ok)> all_ok;

  // Rank 0 writes the replicated tensors, the indexes, the trainer state and
  // `latest`; the first data-parallel replica (ranks 0..ep-1) writes experts.
  bool writes_replicated() const { return rank == 0; }
  bool writes_experts() const { return dp_rank == 0; }
  bool AllOk(bool ok) const { return all_ok ? all_ok(ok) : ok; }
};

struct CheckpointSaveOptions {
  // Complete checkpoints kept (checkpoint.keep_last); 0 keeps all.
  int keep_last = 0;
  // Test seam for crashes and I/O failures: called on every rank at each
  // point listed in docs/checkpoints.md ("tmp_created", "model_written",
  // "optimizer_written", "indexes_written", "state_written", "renamed",
  // "latest_updated"); a non-OK status counts as this rank failing there.
  std::function<absl::Status(absl::string_view point)> fault_hook;
};

// 2: every safetensors shard carries per-tensor checksums (verified at
// save, before publishing, and on every load). 1: none (loaded unverified,
// with a warning).
inline constexpr int kCheckpointFormatVersion = 2;

// run_dir/checkpoints
std::string CheckpointsDir(const std::string& run_dir);
// "step_<step>", and its inverse (nullopt unless the name is exactly that).
std::string StepDirName(int64_t step);
std::optional<int64_t> ParseStepDirName(absl::string_view name);
inline constexpr const char* kTrainerStateFile = "trainer_state.textproto";
inline constexpr const char* kOptimizerIndexFile = "optimizer.safetensors.index.json";

// Saves this rank's part of checkpoint step_<state.step()> (state.layout is
// filled in here from the topology and state.config). Collective. On error
// nothing is published: `latest` and every earlier checkpoint are as they
// were. Pruning failures after a successful save are printed, not returned.
absl::Status SaveCheckpoint(const std::string& run_dir, switchboard::TrainerState state,
                            Model& model, Optimizer& optimizer,
                            const CheckpointTopology& topology,
                            const CheckpointSaveOptions& options = {});

// Whether run_dir/checkpoints/latest exists (it may still be broken).
bool HasCheckpoint(const std::string& run_dir);

// The step directory that run_dir/checkpoints/latest names. NotFound when
// there is no checkpoint or `latest` names a missing directory; DataLoss when
// `latest` is garbled. Messages name the file.
absl::StatusOr<std::string> LatestCheckpoint(const std::string& run_dir);

// Reads and sanity-checks step_dir/trainer_state.textproto (at most 16 MiB).
absl::StatusOr<switchboard::TrainerState> ReadTrainerState(const std::string& step_dir);
// The checks of ReadTrainerState on text in memory: the config parser's
// rules (line and column in errors), a known format_version, non-negative
// counters, optimizer_step <= step, step == dir_step when given, a valid
// saved config. Errors start with `path`. (launch/trainer_state.cc)
absl::StatusOr<switchboard::TrainerState> ParseTrainerState(absl::string_view text,
                                                            const std::string& path,
                                                            std::optional<int64_t> dir_step);

// Whether `config` may continue the saved run: the architecture (model.*
// but init_std; moe.num_experts, top_k, normalize_top_k, the MoE blocks, and the
// routing variants that add tensors: noisy_gating, shared experts, the selection bias),
// optimizer.name (and Adafactor momentum on/off), train.seed,
// micro_batch_size and seq_len must be equal, and train.steps must reach the
// saved step. The error names the file and every field that differs.
absl::Status CheckResumable(const switchboard::TrainerState& saved, const TrainConfig& config,
                            const std::string& state_path);

// Loads step_dir into this rank's model and optimizer (any layout:
// weights and state are picked by global expert id), after checking the
// trainer state against `config`. Names, shapes and dtypes of all weights
// and then of all optimizer state are checked before any is copied; each
// tensor's checksum as it is read (a mismatch fails the load part-way: the
// model and optimizer must then be discarded). Sets the optimizer's step.
// Collective (one all_ok), so every rank fails together. A format 1
// checkpoint (no checksums) loads with a warning on stderr.
absl::StatusOr<switchboard::TrainerState> LoadCheckpoint(const std::string& step_dir,
                                                         const TrainConfig& config, Model& model,
                                                         Optimizer& optimizer,
                                                         const CheckpointTopology& topology);

// Opens step_dir/index_file (model.safetensors.index.json or
// optimizer.safetensors.index.json) and every shard it names. From format
// version 2 on, every shard must carry checksums.
absl::StatusOr<std::unique_ptr<SafetensorsSet>> OpenCheckpointTensors(const std::string& step_dir,
                                                                      const char* index_file,
                                                                      int format_version);

// Reads all of step_dir and checks it without a model: the trainer state
// (ReadTrainerState), both indexes, every shard's header and every tensor's
// checksum. The error names the file (and tensor).
absl::Status VerifyCheckpoint(const std::string& step_dir);

// The newest run_dir/checkpoints/step_K with K < before_step that
// VerifyCheckpoint accepts (its full path), or nullopt. Reads every
// checkpoint it tries, newest first: meant for the error path.
std::optional<std::string> NewestVerifiedCheckpoint(const std::string& run_dir,
                                                    int64_t before_step);

// The step directory that `train --resume_from NAME` means: NAME is
// `step_<N>` or a path to run_dir/checkpoints/step_<N>; it must exist.
// InvalidArgument / NotFound otherwise.
absl::StatusOr<std::string> ResolveResumeFrom(const std::string& run_dir, const std::string& name);

}  // namespace sb
