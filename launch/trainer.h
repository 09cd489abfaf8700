// The training loop: micro-batches with gradient accumulation, clipping,
// the LR schedule and the optimizer; periodic evaluation; metrics and the
// progress line. One process here; parallel/ adds ranks (DESIGN.md).
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "data/batch_source.h"
#include "launch/metrics_log.h"
#include "moe/model.h"
#include "optim/optimizer.h"

namespace sb {

// What one optimizer step measured (means over its micro-batches).
struct StepMetrics {
  double loss = 0, aux_loss = 0, z_loss = 0, dropped_fraction = 0, router_entropy = 0;
  double grad_norm = 0, lr = 0;
  int64_t tokens = 0;
};

class Trainer {
 public:
  // Validates the config, opens the data, builds and initialises the model.
  // run_dir may be empty (no files written: tests).
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainConfig& config,
                                                         const std::string& run_dir);
  // Trains config.train.steps steps, logging and evaluating as configured.
  absl::Status Run();
  // One optimizer step (0-based).
  absl::StatusOr<StepMetrics> TrainStep(int64_t step);
  // Mean validation cross-entropy over train.eval_batches micro-batches
  // (eval capacity factor, no jitter).
  absl::StatusOr<double> Evaluate();

  Model& model() { return *model_; }
  const TrainConfig& config() const { return config_; }

 private:
  Trainer() = default;
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
};

}  // namespace sb
