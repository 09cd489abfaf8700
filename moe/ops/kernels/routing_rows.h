// Per-token routing logic shared by the CPU reference (moe/ops/cpu/routing.cc)
// and the CUDA kernels (moe/ops/cuda/routing.cu, one thread per token), so
// that the CPU tests check the code the GPU runs. T is float or double.
#pragma once

#include <cstdint>

#include "moe/core/host_device.h"

namespace sb::ops::kernels {

// The k largest of p[0..E) in descending order: k passes of argmax where a
// strict '>' keeps the lower id on ties (DESIGN.md). ids [k], vals [k].
template <typename T>
SB_HOST_DEVICE inline void TopKRow(const T* p, int num_experts, int k, int32_t* ids, T* vals) {
  for (int r = 0; r < k; ++r) {
    int best = -1;
    for (int e = 0; e < num_experts; ++e) {
      bool taken = false;
      for (int q = 0; q < r; ++q) taken = taken || ids[q] == e;
      if (!taken && (best < 0 || p[e] > p[best])) best = e;
    }
    ids[r] = best;
    vals[r] = p[best];
  }
}

// gates = p, or p / sum(p) when normalize.    p, gates [k]
template <typename T>
SB_HOST_DEVICE inline void GatesRow(const T* p, int k, bool normalize, T* gates) {
  T sum = 0;
  for (int r = 0; r < k; ++r) sum += p[r];
  for (int r = 0; r < k; ++r) gates[r] = normalize ? p[r] / sum : p[r];
}

// The gradient of GatesRow: with g_r = p_r / S,
// dL/dp_m = (dg_m - sum_r dg_r g_r) / S; the identity without normalize.
template <typename T>
SB_HOST_DEVICE inline void GatesBackwardRow(const T* p, const T* gates, const T* dgates, int k,
                                            bool normalize, T* dp) {
  if (!normalize) {
    for (int r = 0; r < k; ++r) dp[r] = dgates[r];
    return;
  }
  T sum = 0, dot = 0;
  for (int r = 0; r < k; ++r) {
    sum += p[r];
    dot += dgates[r] * gates[r];
  }
  for (int r = 0; r < k; ++r) dp[r] = (dgates[r] - dot) / sum;
}

}  // namespace sb::ops::kernels
