// The machine's dense GEMM throughput, measured: the denominator of model
// FLOPs utilisation (MFU) in the trainer's logs and the benchmarks. A peak
// measured here with the same library, dtype and threads as training says
// what the hardware can do for this code; a datasheet peak says what the
// silicon could do (docs/benchmarks.md reports both where one exists).
#pragma once

#include <cstdint>

#include "moe/core/dtype.h"

namespace sb {

struct GemmRate {
  double flops_per_s = 0.0;  // best repetition: 2 m n k / seconds
  double seconds = 0.0;      // best repetition's time
  int repetitions = 0;
};

// C[m, n] = A[m, k] B[k, n] (row-major ops::Gemm on `device`) in `dtype`,
// repeated until `min_seconds` have passed (at least 3 times); the best
// repetition counts (the one least disturbed by other processes). On a GPU
// each repetition is timed between device synchronisations.
GemmRate MeasureGemm(int64_t m, int64_t n, int64_t k, DType dtype, double min_seconds,
                     Device device = Device::kCpu);

}  // namespace sb
