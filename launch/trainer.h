// The training loop: micro-batches with gradient accumulation, clipping,
// the LR schedule and the optimizer; periodic evaluation; metrics and the
// progress line. Under data x expert parallelism (DESIGN.md "Parallelism",
// docs/parallel.md) every rank runs the same loop on its own micro-batches:
// global micro-batch j = accum_index * world + rank, gradients summed over
// their replicas (parallel/grad_sync.h), metrics averaged over the world.
// Only rank 0 prints and writes run-dir files (see `chief_`).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "data/batch_source.h"
#include "launch/metrics_log.h"
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
  int64_t tokens = 0;  // over all ranks
  StepTimes times;
};

// True for an error that every rank of the job returns at the same point
// (a non-finite loss or norm, which are reduced over all ranks): the caller
// may report it once and exit normally instead of aborting the job.
bool IsErrorOnAllRanks(const absl::Status& status);

class Trainer {
 public:
  // Validates the config (against the grid's world size), opens the data,
  // builds and initialises this rank's model shard. run_dir may be empty
  // (no files written: tests). Makes no collective call, so a rank that
  // fails here can report it (Runtime::AllOk) without hanging the others.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainConfig& config,
                                                         const std::string& run_dir,
                                                         const TrainerContext& context = {});
  // Trains config.train.steps steps, logging and evaluating as configured.
  absl::Status Run();
  // One optimizer step (0-based). Collective: every rank calls it.
  absl::StatusOr<StepMetrics> TrainStep(int64_t step);
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
  // Per MoE layer, routed choices per expert of the last micro-batch summed
  // over the world (collective; empty unless logging.expert_counts).
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
  Batch batch_;
  MetricsLog metrics_;
  double flops_per_token_ = 0;
  // Sums since the last log line.
  StepMetrics interval_;
  int interval_steps_ = 0;
};

}  // namespace sb
