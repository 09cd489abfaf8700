// The training loop: micro-batches with gradient accumulation, clipping,
// the LR schedule and the optimizer; periodic evaluation; metrics and the
// progress line; checkpoints and resume (launch/checkpoint.h), and the
// skipping of non-finite steps. Under data x expert parallelism (DESIGN.md "Parallelism",
// docs/parallel.md) every rank runs the same loop on its own micro-batches:
// global micro-batch j = accum_index * world + rank, gradients summed over
// their replicas (parallel/grad_sync.h), metrics averaged over the world.
// Only rank 0 prints and writes run-dir files (see `chief_`).
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "data/batch_source.h"
#include "launch/checkpoint.h"
#include "launch/memory_estimate.h"
#include "launch/metrics_log.h"
#include "launch/training_log.h"
#include "moe/model.h"
#include "optim/optimizer.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/grad_sync.h"
#include "parallel/process_grid.h"

namespace sb {

// Where a Trainer runs. The default is one process without MPI.
struct TrainerContext {
  // The data x expert grid of this rank (must outlive the trainer); null
  // means a world of one.
  ProcessGrid* grid = nullptr;
  // Parameter and activation dtype: f32, or f64 for exact layout tests.
  DType dtype = DType::kF32;
  // Ranks of the job on this host: they share its memory (the memory check).
  int ranks_on_host = 1;
  // Refuse a run whose memory estimate exceeds the host's available memory.
  bool check_host_memory = true;
};

// Wall time of one optimizer step by phase (this rank; seconds).
struct StepTimes {
  double total = 0;
  double compute = 0;    // data, forward and backward without dispatch / combine
  double dispatch = 0;   // all-to-all into the experts (incl. count exchange), both passes
  double combine = 0;    // all-to-all back from the experts, both passes
  double grad_sync = 0;  // bucketed gradient all-reduce
  double optimizer = 0;  // norm, clipping, update (and the ZeRO-1 all-gather)
};

// What one optimizer step measured (means over its micro-batches).
struct StepMetrics {
  double loss = 0, aux_loss = 0, z_loss = 0, dropped_fraction = 0, router_entropy = 0;
  double grad_norm = 0, lr = 0;
  // Mean over MoE layers of max_e load_e / mean_e load_e, load = routed
  // choices of the step over all ranks (1 = balanced; expert choice: 1).
  double load_imbalance = 0;
  // Largest |auxiliary-loss-free selection bias| after the step (0 when off).
  double selection_bias_abs_max = 0;
  int64_t tokens = 0;  // over all ranks
  StepTimes times;
  // Loss or gradient norm was not finite: no update was made, the gradients
  // were dropped (checkpoint.max_nonfinite_steps in a row stop the run).
  bool skipped = false;
};

// True for an error that every rank of the job returns at the same point
// (too many non-finite steps: loss and norm are reduced over all ranks): the caller
// may report it once and exit normally instead of aborting the job.
bool IsErrorOnAllRanks(const absl::Status& status);
// True for an error caused by the run's input (data that cannot be read,
// a run directory in use): exit code 2 rather than 1 (docs/cli.md).
bool IsInputError(const absl::Status& status);
// True for an error on all ranks (IsErrorOnAllRanks) that this rank hit
// itself (its data, say), as opposed to "another rank failed" or an error
// every rank computed alike: each rank holding one prints it.
bool IsOwnCauseOnAllRanks(const absl::Status& status);

// Whether a fresh (not resumed) run may write into run_dir: not when it holds
// checkpoints/latest (a fresh run would prune that run's checkpoints), nor
// when it holds metrics.jsonl unless `overwrite`. FailedPrecondition naming
// the file and the way out otherwise. Writes nothing.
absl::Status CheckFreshRunDir(const std::string& run_dir, bool overwrite);

// The data checks of Trainer::Create: every source holds at least one
// sample of train.seq_len + 1 tokens, and validation tokens come from the
// training data's tokenizer. Errors name the config field.
absl::Status CheckDataFitsRun(const TrainConfig& config, const BatchSource& train,
                              const BatchSource* val);

class Trainer {
 public:
  // Validates the config (against the grid's world size), opens the data and
  // checks it (every source holds a sample of seq_len + 1 tokens; training
  // and validation data come from one tokenizer), estimates the memory the
  // run needs and refuses it when the host has less, then builds and
  // initialises this rank's model shard. Writes nothing. run_dir may be
  // empty (no files written: tests). Makes no collective call, so a rank
  // that fails here can report it (Runtime::AllOk) without hanging the others.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainConfig& config,
                                                         const std::string& run_dir,
                                                         const TrainerContext& context = {});
  // Trains up to config.train.steps steps (from the resumed step), logging,
  // evaluating and saving checkpoints as configured. Refuses to start a
  // fresh run in a run_dir that already has checkpoints, or metrics.jsonl
  // unless set_overwrite_run_files. config.textproto and metrics.jsonl are
  // written once the first step succeeded (a start that fails changes
  // nothing). While it runs, SIGTERM / SIGINT / SIGUSR1 stop it after the
  // current step with a checkpoint (launch/stop_signals.h): it then returns
  // OK with stopped_by_signal() set. Failures after the first step (data or
  // evaluation errors, metrics.jsonl writes) save a checkpoint first when
  // every rank can (docs/checkpoints.md, "Stopping early").
  absl::Status Run();
  // One optimizer step (0-based). Collective: every rank calls it. A
  // non-finite loss or gradient norm is not an error: the step is skipped
  // (StepMetrics::skipped) on every rank alike.
  absl::StatusOr<StepMetrics> TrainStep(int64_t step);
  // Continues from run_dir/checkpoints/latest, or from one step directory;
  // call before Run. Any data x expert layout loads any other. Collective.
  absl::Status Resume();
  absl::Status ResumeFrom(const std::string& step_dir);
  // Saves checkpoint step_<step> (the state after `step` steps). Collective.
  absl::Status WriteCheckpoint(int64_t step);
  // The data cursor: global index of the first micro-batch of `step`.
  int64_t FirstMicroBatch(int64_t step) const;
  int64_t start_step() const { return start_step_; }
  // Let a fresh Run replace a previous run's metrics.jsonl and config.textproto
  // (train --overwrite); checkpoints are still refused.
  void set_overwrite_run_files(bool overwrite) { overwrite_run_files_ = overwrite; }
  // After Run returned OK: the signal that stopped it early (SIGTERM, ...;
  // -1 when only another rank received one), or 0 when it ran to the end.
  int stopped_by_signal() const { return stopped_by_signal_; }
  // What Create estimated this rank needs (launch/memory_estimate.h).
  const MemoryEstimate& memory_estimate() const { return memory_estimate_; }

  // Test seams: called after the gradient sync, before the gradient norm
  // (fault injection), and after every step.
  void set_gradient_hook(std::function<void(int64_t step, Model&)> hook) {
    gradient_hook_ = std::move(hook);
  }
  void set_step_observer(std::function<void(int64_t step, const StepMetrics&)> observer) {
    step_observer_ = std::move(observer);
  }
  // How ranks meet for checkpoints; Create derives it from the grid, tests
  // that simulate ranks in one process replace it.
  void set_checkpoint_topology(CheckpointTopology topology) { topology_ = std::move(topology); }
  // Mean validation cross-entropy over train.eval_batches micro-batches
  // (eval capacity factor, no jitter), spread over the ranks. Collective.
  absl::StatusOr<double> Evaluate();

  Model& model() { return *model_; }
  const TrainConfig& config() const { return config_; }
  ProcessGrid& grid() { return *grid_; }
  Optimizer& optimizer() { return *optimizer_; }

 private:
  Trainer() = default;
  // Rank 0 prints and writes run-dir files; every other rank stays silent.
  bool chief() const { return grid_->rank() == 0; }
  // Refuses a run directory that this run must not write to (no writes).
  absl::Status CheckRunDir() const;
  // config.textproto and metrics.jsonl (trimmed to start_step_ on resume).
  absl::Status OpenRunFiles();
  // Collective, at the end of every step: whether any rank received a stop
  // signal or failed to write a run-dir file (rank 0's run_files_error_).
  struct StopPoll {
    bool signal = false, write_failed = false;
  };
  StopPoll PollStop();
  // Saves checkpoint step_<steps_done> on the way out of a failed or stopped
  // run, unless nothing changed since the last one or a non-finite streak is
  // on; returns `status` with what happened appended. Collective.
  absl::Status SaveBeforeExit(int64_t steps_done, absl::Status status);
  // Why the periodic save after `steps_done` steps is skipped ("" = save).
  std::string SaveBlocker() const;
  // The checkpoint to go back to after a divergence, as advice text.
  std::string DivergenceAdvice() const;
  // Logs a skipped step; an error once max_nonfinite_steps are in a row.
  absl::Status HandleSkippedStep(int64_t step, const StepMetrics& m);
  // Rank 0: remembers the first failed run-dir write (metrics.jsonl,
  // config.textproto); PollStop tells every rank.
  void NoteWrite(const absl::Status& status);
  switchboard::TrainerState CaptureState(int64_t step) const;
  // Per MoE layer, routed choices per expert of the last micro-batch summed
  // over the world (collective; empty unless logging.expert_counts or
  // TensorBoard logging is on).
  std::vector<std::vector<int64_t>> ExpertCounts();
  void LogStep(int64_t step, const StepMetrics& m, double val_loss, double elapsed, double interval_s,
               int64_t interval_tokens, const std::vector<std::vector<int64_t>>& expert_counts);

  TrainConfig config_;
  std::string run_dir_;
  ModelOptions model_options_;
  // The grid: the context's, or a world of one owned here.
  std::unique_ptr<SelfCommunicator> self_world_;
  std::unique_ptr<ProcessGrid> own_grid_;
  ProcessGrid* grid_ = nullptr;
  std::unique_ptr<AllToAllDispatcher> dispatcher_;  // null when ep == 1
  std::unique_ptr<Model> model_;
  ParamSplit params_;
  std::unique_ptr<GradSync> grad_sync_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<BatchSource> train_data_, val_data_;
  std::vector<Batch> step_batches_;  // TrainStep reads its micro-batches first
  MetricsLog metrics_;
  std::unique_ptr<TensorBoardLog> tensorboard_;  // rank 0, logging.tensorboard
  double flops_per_token_ = 0;
  double peak_flops_ = NAN;  // all ranks together, for MFU (launch/training_log.h)
  // Sums since the last log line.
  StepMetrics interval_;
  int interval_steps_ = 0;
  double last_loss_ = NAN;  // mean loss of the last logged interval
  // Where this run starts (the resumed step, else 0) and the data cursor then.
  int64_t start_step_ = 0;
  int64_t cursor_base_ = 0;
  bool resumed_ = false;
  int64_t tokens_seen_ = 0;
  int nonfinite_streak_ = 0;
  int64_t skipped_steps_ = 0;
  int64_t streak_start_step_ = -1;      // first step of the current non-finite streak
  int64_t last_checkpoint_step_ = -1;   // of the newest checkpoint saved or resumed from
  bool overwrite_run_files_ = false;
  bool run_files_open_ = false;
  absl::Status run_files_error_;        // rank 0: first failed run-dir write
  int stopped_by_signal_ = 0;
  MemoryEstimate memory_estimate_;
  std::vector<Batch> eval_batches_;     // Evaluate reads all its batches first
  CheckpointTopology topology_;
  std::function<void(int64_t, Model&)> gradient_hook_;
  std::function<void(int64_t, const StepMetrics&)> step_observer_;
};

}  // namespace sb
