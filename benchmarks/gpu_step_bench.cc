// Times training steps of a config's model on the GPU (docs/cuda.md,
// "Benchmark"): forward, backward, gradient norm + clipping + AdamW update
// + bf16 refresh, each phase timed between device synchronisations; tokens/s,
// model FLOPs utilisation (Megatron's active-FLOP count over the device's
// dense bf16 peak, benchmarks/gpu_peak.h), and the memory pool's peak.
//   gpu_step_bench --config configs/gpu_1b.textproto [--set k=v]... [--warmup 3]
//       [--iters 10] [--json FILE]
// The batch is micro_batch_size x seq_len ids drawn uniformly from the
// vocabulary (one micro-batch per step). Before timing it validates: the
// initial loss is ln(vocab) within 1 (small init: logits of std init_std * sqrt(d))
// and the loss and gradient norm stay finite and the loss falls on the
// one repeated batch.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/bench_main.h"
#include "benchmarks/gpu_peak.h"
#include "launch/model_factory.h"
#include "moe/core/device_memory.h"
#include "moe/core/rng.h"
#include "optim/grad_clip.h"
#include "optim/optimizer.h"

namespace sb {
namespace {

using bench::Median;
using bench::Now;

absl::Status Run(const Flags& flags) {
  if (CudaDeviceCount() == 0) {
    return absl::FailedPreconditionError(CudaBuilt() ? "no CUDA device or driver: nothing to time"
                                                     : "built without CUDA (SB_CUDA=OFF)");
  }
  // One GPU: experts all local; the config's own precision unless --set.
  auto config = bench::LoadConfig(flags, "configs/gpu_1b.textproto",
                                  {"parallel.expert_parallel_size=1", "train.device=CUDA",
                                   "train.grad_accum_steps=1"});
  if (!config.ok()) return config.status();
  auto warmup = flags.GetInt("warmup", 3), iters = flags.GetInt("iters", 10);
  if (!warmup.ok()) return warmup.status();
  if (!iters.ok()) return iters.status();
  if (*warmup < 0 || *iters < 1) return absl::InvalidArgumentError("need --warmup >= 0, --iters >= 1");

  const auto& train = config->train();
  const bool bf16 = train.precision() != switchboard::TrainLoopConfig::FP32;
  const ModelOptions options = ModelOptionsFromConfig(*config);
  const int64_t B = train.micro_batch_size(), S = train.seq_len();
  const double t_init = Now();
  Model model(options, nullptr, DType::kF32, Device::kCuda, bf16 ? DType::kBF16 : DType::kF32);
  model.InitWeights(train.seed());
  std::unique_ptr<Optimizer> optimizer = MakeOptimizer(config->optimizer(), model.Parameters());
  DeviceSynchronize();
  const double init_s = Now() - t_init;

  std::vector<int32_t> in(B * S), tg(B * S);
  const uint64_t key = StreamKey({train.seed(), 0xba7c4});
  for (int64_t i = 0; i < B * S; ++i) {
    in[i] = static_cast<int32_t>(UniformAt(key, 2 * i) * static_cast<double>(options.vocab_size));
    tg[i] = static_cast<int32_t>(UniformAt(key, 2 * i + 1) * static_cast<double>(options.vocab_size));
  }
  const Tensor inputs = Tensor::FromVector(in, {B, S}), targets = Tensor::FromVector(tg, {B, S});
  const std::vector<Parameter*> params = model.Parameters();
  const double lr = config->optimizer().lr();

  struct Times { double fwd, bwd, opt; };
  auto step = [&](int64_t i, ForwardResult* r, double* norm) {
    Times t;
    model.ZeroGrad();
    StepContext ctx{true, train.seed(), i, 0};
    DeviceSynchronize();
    const double t0 = Now();
    *r = model.Forward(inputs, targets, ctx);
    DeviceSynchronize();
    const double t1 = Now();
    model.Backward(1.0);
    DeviceSynchronize();
    const double t2 = Now();
    *norm = std::sqrt(GradSquaredNorm(params));
    ClipGradients(params, *norm, config->optimizer().grad_clip());
    optimizer->Step(lr);
    model.RefreshComputeCopies();
    DeviceSynchronize();
    t.fwd = t1 - t0;
    t.bwd = t2 - t1;
    t.opt = Now() - t2;
    return t;
  };

  // Validate before timing: the first loss, then learning on one batch.
  ForwardResult first, r;
  double norm = 0;
  step(0, &first, &norm);
  const double expected = std::log(static_cast<double>(options.vocab_size));
  if (!(std::abs(first.loss - expected) < 1.0) || !std::isfinite(norm)) {
    return absl::InternalError(absl::StrFormat(
        "validation failed: initial loss %.4f (expected ln V = %.4f +- 1), gradient norm %g",
        first.loss, expected, norm));
  }
  std::vector<double> fwd, bwd, opt, total;
  double last_loss = first.loss;
  for (int64_t i = 1; i <= *warmup + *iters; ++i) {
    const Times t = step(i, &r, &norm);
    if (!std::isfinite(r.loss) || !std::isfinite(norm)) {
      return absl::InternalError(absl::StrFormat("step %d: loss %g, gradient norm %g", i, r.loss, norm));
    }
    last_loss = r.loss;
    if (i <= *warmup) continue;
    fwd.push_back(t.fwd);
    bwd.push_back(t.bwd);
    opt.push_back(t.opt);
    total.push_back(t.fwd + t.bwd + t.opt);
  }
  if (!(last_loss < first.loss)) {
    return absl::InternalError(absl::StrFormat(
        "validation failed: the loss on one repeated batch went from %.4f to %.4f", first.loss, last_loss));
  }

  const double step_s = Median(total);
  const double tokens_per_s = static_cast<double>(B * S) / step_s;
  const double flops_per_token = TrainFlopsPerToken(options, static_cast<int>(S));
  const std::string device = CudaDeviceDescription();
  const double peak = PeakBf16Tflops(device);
  const double tflops = tokens_per_s * flops_per_token / 1e12;
  const CudaMemoryStats mem = GetCudaMemoryStats();
  std::printf("gpu_step_bench | %s | %s | %.1fM params (%.1fM active) | batch %lldx%lld | loss %.4f -> %.4f\n"
              "  step %.1f ms (fwd %.1f, bwd %.1f, norm+clip+adamw %.1f) | %.0f tokens/s | %.1f TFLOP/s"
              " | MFU %s | peak memory %.2f GiB (pool reserved %.2f GiB) | init %.1f s\n",
              device.c_str(), bf16 ? "bf16" : "fp32", model.NumParameters() / 1e6,
              flops_per_token / 6e6, static_cast<long long>(B), static_cast<long long>(S), first.loss,
              last_loss, 1e3 * step_s, 1e3 * Median(fwd), 1e3 * Median(bwd), 1e3 * Median(opt),
              tokens_per_s, tflops,
              peak > 0 ? absl::StrFormat("%.1f%% of %.0f", 100 * tflops / peak, peak).c_str() : "n/a",
              mem.peak_in_use / 1073741824.0, mem.peak_reserved / 1073741824.0, init_s);
  const std::string json = flags.Get("json", "");
  if (!json.empty()) {
    std::FILE* f = std::fopen(json.c_str(), "w");
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", json));
    std::fprintf(f,
                 "{\"impl\": \"switchboard\", \"device\": \"%s\", \"precision\": \"%s\", \"params\": %lld,\n"
                 " \"batch\": %lld, \"seq_len\": %lld, \"flops_per_token\": %.0f, \"peak_tflops\": %.1f,\n"
                 " \"loss_first\": %.6f, \"loss_last\": %.6f, \"dropped_fraction\": %.6f,\n"
                 " \"step_ms\": %.3f, \"forward_ms\": %.3f, \"backward_ms\": %.3f, \"optimizer_ms\": %.3f,\n"
                 " \"tokens_per_s\": %.1f, \"tflops\": %.2f, \"mfu\": %.4f,\n"
                 " \"peak_memory_gib\": %.3f, \"pool_reserved_gib\": %.3f, \"init_s\": %.2f,\n"
                 " \"warmup\": %lld, \"iters\": %lld}\n",
                 device.c_str(), bf16 ? "bf16" : "fp32", static_cast<long long>(model.NumParameters()),
                 static_cast<long long>(B), static_cast<long long>(S), flops_per_token, peak, first.loss,
                 last_loss, r.dropped_fraction, 1e3 * step_s, 1e3 * Median(fwd), 1e3 * Median(bwd),
                 1e3 * Median(opt), tokens_per_s, tflops, peak > 0 ? tflops / peak : 0.0,
                 mem.peak_in_use / 1073741824.0, mem.peak_reserved / 1073741824.0, init_s,
                 static_cast<long long>(*warmup), static_cast<long long>(*iters));
    std::fclose(f);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace sb

int main(int argc, char** argv) {
  return sb::bench::Main(argc, argv, "gpu_step_bench",
                         {{"config", "TrainConfig text file (default configs/gpu_1b.textproto)"},
                          {"set", "override a config field, a.b=value (repeatable)", false, true},
                          {"warmup", "untimed steps after the validation step (default 3)"},
                          {"iters", "timed steps (default 10)"},
                          {"json", "write the results here"}},
                         sb::Run);
}
