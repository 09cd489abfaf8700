// What the trainer reports besides metrics.jsonl and the progress line:
// TensorBoard event files in the run directory (launch/tensorboard/), model
// FLOPs utilisation against a measured GEMM peak, and the compact per-layer
// expert-load line of logging.expert_counts. Rank 0 writes; docs/cli.md lists
// the tags.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "launch/tensorboard/event_writer.h"
#include "parallel/communicator.h"

namespace sb {

struct StepMetrics;  // launch/trainer.h

// One line per MoE layer: "  moe 0 | max/mean 1.31 | 310 251 198 ..." with
// the routed choices per expert (summed over ranks) and the busiest expert's
// load over the mean (1 = balanced).
std::string FormatExpertCounts(const std::vector<std::vector<int64_t>>& counts);

// Peak FLOP/s of the whole world for MFU: logging.peak_tflops per rank when
// set, else every rank times GEMMs in the compute dtype on its device at the
// same time (best of ~0.2 s, under the contention training will see: 512^3
// on a CPU, 4096^3 on a GPU, which needs large tiles to reach its peak) and
// the rates are summed. Collective over `world`.
double WorldPeakFlops(const switchboard::LoggingConfig& logging, DType dtype, Device device,
                      Communicator& world);

class TensorBoardLog {
 public:
  // A new event file in run_dir (events.out.tfevents.*). A resumed run first
  // writes a SessionLog START at start_step, so that TensorBoard drops the
  // steps after the checkpoint that an earlier file recorded.
  static absl::StatusOr<std::unique_ptr<TensorBoardLog>> Open(const std::string& run_dir,
                                                              bool resumed, int64_t start_step);
  // Scalars train/*, eval/val_loss (when finite), perf/* (tokens/s, MFU,
  // model TFLOP/s, the step-time phases) and per MoE layer
  // experts/moeN/load_max_over_mean, load_cv and the expert_load histogram
  // (bucket = expert id). `step` is 1-based, as in metrics.jsonl. A write
  // error is returned once; the caller decides to stop logging.
  absl::Status Write(int64_t step, const StepMetrics& m, double tokens_per_s, double model_flops_per_s,
                     double mfu, double val_loss,
                     const std::vector<std::vector<int64_t>>& expert_counts);
  const std::string& path() const { return writer_->path(); }

 private:
  explicit TensorBoardLog(std::unique_ptr<EventWriter> writer) : writer_(std::move(writer)) {}
  std::unique_ptr<EventWriter> writer_;
};

}  // namespace sb
