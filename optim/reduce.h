// Internal helpers of optim/: checks on the parameters an optimizer is given
// and reductions whose result does not depend on the OpenMP thread count.
//
// Why our own sum instead of ops::SumSquares: an OpenMP `reduction(+)` adds
// the per-thread partial sums in whatever order the threads finish, so the
// last bits of a norm can change from run to run and with OMP_NUM_THREADS.
// Resuming from a checkpoint must continue bitwise identically, so every
// reduction here sums fixed-size chunks serially and then adds the chunk
// sums in index order. Cost: one small vector of chunk partials per call.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "moe/core/parameter.h"

namespace sb::optim_internal {

// Elementwise loops go parallel above this many elements (below it the
// thread start-up costs more than the loop).
constexpr int64_t kParallelMinElements = 1 << 15;
// Chunk length of DeterministicSum: fixed, so results never depend on threads.
constexpr int64_t kSumChunk = 1 << 13;

// sum_{i < n} term(i), accumulated in f64 in a fixed order.
template <typename F>
double DeterministicSum(int64_t n, F&& term) {
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kSumChunk);
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = c * kSumChunk; i < end; ++i) s += term(i);
    partial[static_cast<size_t>(c)] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

// Fails unless the optimizer can update `param` on the CPU: value and grad
// defined, same shape, same f32/f64 dtype, host memory.
void CheckOptimizable(const Parameter& param);

}  // namespace sb::optim_internal
