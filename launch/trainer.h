// The training loop: micro-batches with gradient accumulation, clipping,
// the LR schedule and the optimizer; periodic evaluation; metrics and the
// progress line; checkpoints and resume (launch/checkpoint.h), and the
// skipping of non-finite steps. One process here; parallel/ adds ranks
// (DESIGN.md).
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "data/batch_source.h"
#include "launch/checkpoint.h"
#include "launch/metrics_log.h"
#include "moe/model.h"
#include "optim/optimizer.h"

namespace sb {

// What one optimizer step measured (means over its micro-batches).
struct StepMetrics {
  double loss = 0, aux_loss = 0, z_loss = 0, dropped_fraction = 0, router_entropy = 0;
  double grad_norm = 0, lr = 0;
  int64_t tokens = 0;
  // Loss or gradient norm was not finite: no update was made, the gradients
  // were dropped (checkpoint.max_nonfinite_steps in a row stop the run).
  bool skipped = false;
};

class Trainer {
 public:
  // Validates the config, opens the data, builds and initialises the model.
  // run_dir may be empty (no files written: tests).
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainConfig& config,
                                                         const std::string& run_dir);
  // Trains up to config.train.steps steps (from the resumed step), logging,
  // evaluating and saving checkpoints as configured. Refuses to start a
  // fresh run in a run_dir that already has checkpoints.
  absl::Status Run();
  // One optimizer step (0-based). A non-finite loss or gradient norm is not
  // an error: the step is skipped (StepMetrics::skipped).
  absl::StatusOr<StepMetrics> TrainStep(int64_t step);
  // Continues from run_dir/checkpoints/latest, or from one step directory;
  // call before Run. Any data x expert layout loads any other.
  absl::Status Resume();
  absl::Status ResumeFrom(const std::string& step_dir);
  // Saves checkpoint step_<step> (the state after `step` steps). Collective.
  absl::Status WriteCheckpoint(int64_t step);
  // The data cursor: global index of the first micro-batch of `step`.
  int64_t FirstMicroBatch(int64_t step) const;
  int64_t start_step() const { return start_step_; }

  // How ranks meet for checkpoints; the default is one process.
  void set_checkpoint_topology(CheckpointTopology topology) { topology_ = std::move(topology); }
  // Test seams: called after the backward passes, before the gradient norm
  // (fault injection), and after every step.
  void set_gradient_hook(std::function<void(int64_t step, Model&)> hook) {
    gradient_hook_ = std::move(hook);
  }
  void set_step_observer(std::function<void(int64_t step, const StepMetrics&)> observer) {
    step_observer_ = std::move(observer);
  }
  // Mean validation cross-entropy over train.eval_batches micro-batches
  // (eval capacity factor, no jitter).
  absl::StatusOr<double> Evaluate();

  Model& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }
  const TrainConfig& config() const { return config_; }

 private:
  Trainer() = default;
  // config.textproto and metrics.jsonl (trimmed to start_step_ on resume).
  absl::Status OpenRunFiles();
  // Logs a skipped step; an error once max_nonfinite_steps are in a row.
  absl::Status HandleSkippedStep(int64_t step, const StepMetrics& m);
  switchboard::TrainerState CaptureState(int64_t step) const;
  void LogStep(int64_t step, const StepMetrics& m, double val_loss, double elapsed, double interval_s,
               int64_t interval_tokens);

  TrainConfig config_;
  std::string run_dir_;
  ModelOptions model_options_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<BatchSource> train_data_, val_data_;
  Batch batch_;
  MetricsLog metrics_;
  double flops_per_token_ = 0;
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
  CheckpointTopology topology_;
  std::function<void(int64_t, Model&)> gradient_hook_;
  std::function<void(int64_t, const StepMetrics&)> step_observer_;
};

}  // namespace sb
