// The experts' GEMMs against one dense cuBLAS GEMM of the same FLOPs, on the
// GPU in bf16 (f32 accumulation; f32 weight gradients), for a config's MoE
// shape (docs/cuda.md, "Benchmark"; target: >= 85% of dense throughput):
//   uneven   rows per expert from a skewed split: grouped GEMM
//            (cublasGemmGroupedBatchedEx), as dropless routing runs;
//   capacity every expert padded to C = ceil(cf_train * T k / E) rows:
//            strided-batched GEMM, as fixed capacity runs (FLOPs counted
//            on the T k useful rows: padding is the layout's cost).
// For each: forward (x W1^T), data gradient (dh W1), weight gradient (dh^T x).
//   gpu_expert_gemm_bench --config configs/gpu_1b.textproto [--set k=v]... [--iters 20] [--json F]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "benchmarks/bench_main.h"
#include "launch/model_factory.h"
#include "moe/core/device_memory.h"
#include "moe/ops/ops.h"

namespace sb {
namespace {

// Seconds per call of f, the median of `iters` timed calls after 3 warm-ups.
template <typename F>
double Time(int iters, F&& f) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    DeviceSynchronize();
    const double t0 = bench::Now();
    f();
    DeviceSynchronize();
    t.push_back(bench::Now() - t0);
  }
  return bench::Median(t);
}

absl::Status Run(const Flags& flags) {
  if (CudaDeviceCount() == 0) return absl::FailedPreconditionError("no CUDA device or driver");
  auto config = bench::LoadConfig(flags, "configs/gpu_1b.textproto", {"parallel.expert_parallel_size=1"});
  if (!config.ok()) return config.status();
  auto iters = flags.GetInt("iters", 20);
  if (!iters.ok()) return iters.status();
  const ModelOptions o = ModelOptionsFromConfig(*config);
  const int64_t E = o.router.num_experts, D = o.d_model, F = o.expert_ffn_dim;
  const int64_t N = int64_t{config->train().micro_batch_size()} * config->train().seq_len() * o.router.top_k;
  const int64_t C = static_cast<int64_t>(std::ceil(o.router.capacity_factor_train * N / E));
  // Skewed split of N rows: expert e gets a share ~ 1 / (e + 4), the last one the rest.
  std::vector<int64_t> uneven(E);
  double z = 0;
  for (int64_t e = 0; e < E; ++e) z += 1.0 / (e + 4);
  int64_t used = 0;
  for (int64_t e = 0; e + 1 < E; ++e) used += uneven[e] = static_cast<int64_t>(N * (1.0 / (e + 4)) / z);
  uneven[E - 1] = N - used;
  const std::vector<int64_t> padded(E, C);

  const DType bf16 = DType::kBF16;
  const Device gpu = Device::kCuda;
  Tensor w = Tensor::Empty({E, F, D}, bf16, gpu), dw = Tensor::Zeros({E, F, D}, DType::kF32, gpu);
  ops::Fill(w, 0.01);
  const double flops = 2.0 * N * D * F;  // each of the three GEMMs, on the useful rows
  struct Result { std::string name; double fwd, dgrad, wgrad; };
  std::vector<Result> results;
  auto run = [&](const std::string& name, const std::vector<int64_t>& rows) {
    int64_t n = 0;
    for (int64_t r : rows) n += r;
    Tensor x = Tensor::Empty({n, D}, bf16, gpu), h = Tensor::Empty({n, F}, bf16, gpu);
    Tensor dx = Tensor::Empty({n, D}, bf16, gpu);
    ops::Fill(x, 0.5);
    ops::Fill(h, 0.25);
    Result r{name, 0, 0, 0};
    r.fwd = flops / Time(*iters, [&] { ops::GroupedGemm(x, false, w, true, h, rows); }) / 1e12;
    r.dgrad = flops / Time(*iters, [&] { ops::GroupedGemm(h, false, w, false, dx, rows); }) / 1e12;
    r.wgrad = flops / Time(*iters, [&] { ops::GroupedGemm(h, true, x, false, dw, rows, 1.0, 1.0); }) / 1e12;
    results.push_back(r);
  };
  // Dense: the same FLOPs as one [N, D] x [D, F] product (and its two partners).
  {
    Tensor x = Tensor::Empty({N, D}, bf16, gpu), wd = Tensor::Empty({F, D}, bf16, gpu);
    Tensor h = Tensor::Empty({N, F}, bf16, gpu), dx = Tensor::Empty({N, D}, bf16, gpu);
    Tensor dwd = Tensor::Zeros({F, D}, DType::kF32, gpu);
    for (const Tensor* t : {&x, &wd, &h}) ops::Fill(*t, 0.1);
    Result r{"dense", 0, 0, 0};
    r.fwd = flops / Time(*iters, [&] { ops::Gemm(x, false, wd, true, h); }) / 1e12;
    r.dgrad = flops / Time(*iters, [&] { ops::Gemm(h, false, wd, false, dx); }) / 1e12;
    r.wgrad = flops / Time(*iters, [&] { ops::Gemm(h, true, x, false, dwd, 1.0, 1.0); }) / 1e12;
    results.push_back(r);
  }
  run("uneven_grouped", uneven);
  run("capacity_strided", padded);
  const Result& dense = results[0];
  std::string json = absl::StrFormat(
      "{\"device\": \"%s\", \"experts\": %d, \"d_model\": %d, \"ffn\": %d, \"rows\": %d, \"capacity\": %d, "
      "\"uneven_rows\": [%s], \"tflops\": {",
      CudaDeviceDescription(), E, D, F, N, C, absl::StrJoin(uneven, ", "));
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::printf("%-17s fwd %6.1f  dgrad %6.1f  wgrad %6.1f TFLOP/s  (vs dense: %.0f%% %.0f%% %.0f%%)\n",
                r.name.c_str(), r.fwd, r.dgrad, r.wgrad, 100 * r.fwd / dense.fwd,
                100 * r.dgrad / dense.dgrad, 100 * r.wgrad / dense.wgrad);
    absl::StrAppend(&json, i ? ", " : "",
                    absl::StrFormat("\"%s\": {\"fwd\": %.2f, \"dgrad\": %.2f, \"wgrad\": %.2f, "
                                    "\"vs_dense\": [%.4f, %.4f, %.4f]}",
                                    r.name, r.fwd, r.dgrad, r.wgrad, r.fwd / dense.fwd,
                                    r.dgrad / dense.dgrad, r.wgrad / dense.wgrad));
  }
  absl::StrAppend(&json, "}}\n");
  const std::string path = flags.Get("json", "");
  if (!path.empty()) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace sb

int main(int argc, char** argv) {
  return sb::bench::Main(argc, argv, "gpu_expert_gemm_bench",
                         {{"config", "TrainConfig text file (default configs/gpu_1b.textproto)"},
                          {"set", "override a config field, a.b=value (repeatable)", false, true},
                          {"iters", "timed calls per GEMM (default 20)"},
                          {"json", "write the results here"}},
                         sb::Run);
}
