#include "launch/training_log.h"

#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "launch/gemm_peak.h"
#include "launch/trainer.h"

namespace sb {
namespace {

double WallTime() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct LoadStats {
  double max_over_mean = 0.0;  // busiest expert / mean (1 = balanced)
  double cv = 0.0;             // standard deviation / mean over experts
};

LoadStats Load(const std::vector<int64_t>& counts) {
  LoadStats s;
  if (counts.empty()) return s;
  double sum = 0.0, max = 0.0;
  for (int64_t c : counts) {
    sum += static_cast<double>(c);
    max = std::max(max, static_cast<double>(c));
  }
  const double mean = sum / counts.size();
  if (mean <= 0.0) return s;
  double var = 0.0;
  for (int64_t c : counts) var += (c - mean) * (c - mean);
  s.max_over_mean = max / mean;
  s.cv = std::sqrt(var / counts.size()) / mean;
  return s;
}

}  // namespace

std::string FormatExpertCounts(const std::vector<std::vector<int64_t>>& counts) {
  std::string out;
  for (size_t i = 0; i < counts.size(); ++i) {
    absl::StrAppend(&out, absl::StrFormat("  moe %d | max/mean %.2f | ", i, Load(counts[i]).max_over_mean),
                    absl::StrJoin(counts[i], " "), "\n");
  }
  return out;
}

double WorldPeakFlops(const switchboard::LoggingConfig& logging, DType dtype, Device device,
                      Communicator& world) {
  if (logging.peak_tflops() > 0) return logging.peak_tflops() * 1e12 * world.size();
  const int64_t n = device == Device::kCpu ? 512 : 4096;
  const double mine = MeasureGemm(n, n, n, dtype, 0.2, device).flops_per_s;
  return AllReduceSum(world, {mine})[0];
}

absl::StatusOr<std::unique_ptr<TensorBoardLog>> TensorBoardLog::Open(const std::string& run_dir,
                                                                     bool resumed, int64_t start_step) {
  const double now = WallTime();
  auto writer = EventWriter::Create(run_dir, now);
  if (!writer.ok()) return writer.status();
  if (resumed) {
    if (absl::Status s = (*writer)->WriteSessionStart(start_step + 1, now); !s.ok()) return s;
  }
  return std::unique_ptr<TensorBoardLog>(new TensorBoardLog(std::move(*writer)));
}

absl::Status TensorBoardLog::Write(int64_t step, const StepMetrics& m, double tokens_per_s,
                                   double model_flops_per_s, double mfu, double val_loss,
                                   const std::vector<std::vector<int64_t>>& expert_counts) {
  const double now = WallTime();
  std::vector<std::pair<std::string, double>> scalars = {
      {"train/loss", m.loss},
      {"train/aux_loss", m.aux_loss},
      {"train/z_loss", m.z_loss},
      {"train/lr", m.lr},
      {"train/grad_norm", m.grad_norm},
      {"train/dropped_fraction", m.dropped_fraction},
      {"train/router_entropy", m.router_entropy},
      {"perf/tokens_per_s", tokens_per_s},
      {"perf/model_tflops", model_flops_per_s / 1e12},
      {"perf/step_s", m.times.total},
      {"perf/compute_s", m.times.compute},
      {"perf/dispatch_s", m.times.dispatch},
      {"perf/combine_s", m.times.combine},
      {"perf/grad_sync_s", m.times.grad_sync},
      {"perf/optimizer_s", m.times.optimizer},
  };
  if (std::isfinite(mfu)) scalars.push_back({"perf/mfu", mfu});
  if (std::isfinite(val_loss)) scalars.push_back({"eval/val_loss", val_loss});
  for (size_t i = 0; i < expert_counts.size(); ++i) {
    const LoadStats load = Load(expert_counts[i]);
    scalars.push_back({absl::StrCat("experts/moe", i, "/load_max_over_mean"), load.max_over_mean});
    scalars.push_back({absl::StrCat("experts/moe", i, "/load_cv"), load.cv});
  }
  if (absl::Status s = writer_->WriteScalars(step, now, scalars); !s.ok()) return s;
  for (size_t i = 0; i < expert_counts.size(); ++i) {
    if (absl::Status s = writer_->WriteHistogram(step, now, absl::StrCat("experts/moe", i, "/expert_load"),
                                                 CountsHistogram(expert_counts[i]));
        !s.ok()) {
      return s;
    }
  }
  return writer_->Flush();
}

}  // namespace sb
