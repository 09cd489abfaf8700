// The machine's measured ceilings for MFU and the roofline view
// (benchmarks/scaling.py, docs/benchmarks.md):
//   gemm_peak_bench [--dtype f32] [--sizes 256,512,1024,2048] [--min_seconds 0.3]
//       [--expert_shapes "D:F,D:F"] [--rows 16,64,256,1024,4096] [--json FILE]
// 1. Square GEMMs C = A B (ops::Gemm: OpenBLAS, the threads of
//    OMP_NUM_THREADS): the best rate over the sizes is the dense peak.
// 2. Memory bandwidth: a STREAM-style triad a = b + s c over 3 x 64 MiB
//    (bytes counted: 3 arrays per pass), best of several passes.
// 3. The expert GEMMs of an MoE layer with d_model D and expert width F for
//    each count of rows per expert m in --rows, the three forward products
//    ([m, D] x [D, F] twice, [m, F] x [F, D]) and the backward ones (x^T dy
//    shapes and dy W), rate and arithmetic intensity (FLOP per byte of A, B
//    and C once) each: the points of the roofline plot.
// OpenBLAS picks its kernels for the CPU when it loads unless
// OPENBLAS_CORETYPE says otherwise; the kernels in use are reported.
#include <cblas.h>  // OpenBLAS: openblas_get_corename
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "launch/flags.h"
#include "launch/gemm_peak.h"

namespace sb {
namespace {

absl::StatusOr<std::vector<int64_t>> IntList(const std::string& text, const char* flag) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", part, "' is not a positive integer"));
    }
    out.push_back(v);
  }
  return out;
}

// Best bandwidth of a = b + s c over `bytes` per array, in bytes/s.
double TriadBandwidth(int64_t bytes, double min_seconds) {
  const int64_t n = bytes / static_cast<int64_t>(sizeof(float));
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  double best = 0.0, total = 0.0;
  for (int rep = 0; rep < 3 || total < min_seconds; ++rep) {
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] + 0.5f * c[i];
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    total += s;
    if (rep > 0) best = std::max(best, 3.0 * static_cast<double>(bytes) / s);  // rep 0 faults pages in
  }
  return best;
}

absl::Status Run(const Flags& flags) {
  const std::string dtype_name = flags.Get("dtype", "f32");
  if (dtype_name != "f32" && dtype_name != "f64") return absl::InvalidArgumentError("--dtype f32 or f64");
  const DType dtype = dtype_name == "f32" ? DType::kF32 : DType::kF64;
  const int64_t elem = dtype == DType::kF32 ? 4 : 8;
  auto sizes = IntList(flags.Get("sizes", "256,512,1024,2048"), "sizes");
  auto rows = IntList(flags.Get("rows", "16,64,256,1024,4096"), "rows");
  auto min_seconds = flags.GetDouble("min_seconds", 0.3);
  if (!sizes.ok()) return sizes.status();
  if (!rows.ok()) return rows.status();
  if (!min_seconds.ok()) return min_seconds.status();
  const int threads = omp_get_max_threads();

  std::vector<std::string> square;
  double peak = 0.0;
  int64_t peak_size = 0;
  for (int64_t n : *sizes) {
    const GemmRate r = MeasureGemm(n, n, n, dtype, *min_seconds);
    std::printf("gemm %s %lld^3: %.1f GFLOP/s (best of %d)\n", dtype_name.c_str(),
                static_cast<long long>(n), r.flops_per_s / 1e9, r.repetitions);
    square.push_back(absl::StrFormat("{\"n\": %d, \"gflops\": %.2f}", n, r.flops_per_s / 1e9));
    if (r.flops_per_s > peak) {
      peak = r.flops_per_s;
      peak_size = n;
    }
  }
  const double bandwidth = TriadBandwidth(int64_t{64} << 20, *min_seconds);
  std::printf("triad bandwidth: %.2f GB/s\n", bandwidth / 1e9);

  std::vector<std::string> expert;
  for (absl::string_view shape : absl::StrSplit(flags.Get("expert_shapes", "128:256,512:1024"), ',', absl::SkipEmpty())) {
    std::vector<std::string> dims = absl::StrSplit(shape, ':');
    int64_t d = 0, f = 0;
    if (dims.size() != 2 || !absl::SimpleAtoi(dims[0], &d) || !absl::SimpleAtoi(dims[1], &f) || d < 1 || f < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--expert_shapes: '", shape, "' is not D:F"));
    }
    for (int64_t m : *rows) {
      // (name, M, N, K) of C[M, N] = A[M, K] B[K, N]: forward x W1^T (and W3),
      // act W2^T; backward dW1 = dgate^T x, dx = dgate W1, dW2 = dy^T act.
      const struct { const char* name; int64_t mm, nn, kk; } products[] = {
          {"fwd_up", m, f, d}, {"fwd_down", m, d, f}, {"bwd_dw_up", f, d, m}, {"bwd_dx", m, d, f},
          {"bwd_dw_down", d, f, m}};
      double flops = 0, seconds = 0;
      std::vector<std::string> parts;
      for (const auto& p : products) {
        const GemmRate r = MeasureGemm(p.mm, p.nn, p.kk, dtype, *min_seconds / 5);
        const double bytes = static_cast<double>(elem) * (p.mm * p.kk + p.kk * p.nn + p.mm * p.nn);
        const double fl = 2.0 * p.mm * p.nn * p.kk;
        parts.push_back(absl::StrFormat(
            "{\"name\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"gflops\": %.2f, \"intensity\": %.3f}",
            p.name, p.mm, p.nn, p.kk, r.flops_per_s / 1e9, fl / bytes));
        flops += fl;
        seconds += fl / r.flops_per_s;
      }
      std::printf("expert gemms d_model %lld width %lld, %5lld rows: %.1f GFLOP/s overall\n",
                  static_cast<long long>(d), static_cast<long long>(f), static_cast<long long>(m),
                  flops / seconds / 1e9);
      expert.push_back(absl::StrFormat("{\"d_model\": %d, \"ffn\": %d, \"rows\": %d, \"gflops\": %.2f, "
                                       "\"products\": [%s]}",
                                       d, f, m, flops / seconds / 1e9, absl::StrJoin(parts, ", ")));
    }
  }

  const std::string json = absl::StrFormat(
      "{\"dtype\": \"%s\", \"threads\": %d, \"blas_core\": \"%s\", \"peak_gflops\": %.2f, \"peak_size\": %d, "
      "\"triad_gb_per_s\": %.3f,\n \"square\": [%s],\n \"expert\": [\n  %s]}\n",
      dtype_name, threads, openblas_get_corename(), peak / 1e9, peak_size, bandwidth / 1e9, absl::StrJoin(square, ", "),
      absl::StrJoin(expert, ",\n  "));
  if (flags.Has("json")) {
    std::FILE* f = std::fopen(flags.Get("json").c_str(), "w");
    if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot write ", flags.Get("json")));
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  std::printf("peak %.1f GFLOP/s (%s, %d threads, %lld^3, OpenBLAS %s kernels)\n", peak / 1e9,
              dtype_name.c_str(), threads, static_cast<long long>(peak_size), openblas_get_corename());
  return absl::OkStatus();
}

}  // namespace
}  // namespace sb

int main(int argc, char** argv) {
  const std::vector<sb::FlagSpec> specs = {
      {"dtype", "f32 (default) or f64"},
      {"sizes", "square GEMM sizes (default 256,512,1024,2048)"},
      {"min_seconds", "time per measurement (default 0.3)"},
      {"expert_shapes", "D:F pairs of the expert GEMMs (default 128:256,512:1024)"},
      {"rows", "rows per expert for the expert GEMMs (default 16,64,256,1024,4096)"},
      {"json", "report path"},
  };
  auto flags = sb::Flags::Parse(std::vector<std::string>(argv + 1, argv + argc), specs);
  if (!flags.ok()) {
    std::fprintf(stderr, "gemm_peak_bench: %s\n\n%s", std::string(flags.status().message()).c_str(),
                 sb::FlagsUsage("gemm_peak_bench", specs).c_str());
    return 2;
  }
  if (absl::Status s = sb::Run(*flags); !s.ok()) {
    std::fprintf(stderr, "gemm_peak_bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
