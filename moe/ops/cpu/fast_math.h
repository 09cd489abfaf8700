// Vectorisable exp for the CPU kernels' hot loops (softmax, cross-entropy,
// attention). std::exp is a scalar libm call that GCC cannot vectorise
// without -ffast-math; this is Cephes' expf (Moshier): Cody-Waite range
// reduction, degree-5 minimax polynomial, 2^n by exponent bits. Max relative
// error ~2 ulp on [-87, 88]; inputs above 88 saturate at exp(88); results for x < -87.3 are ~1e-38 rather than
// denormal or 0, which softmax sums cannot tell apart. Doubles (gradient
// checks) keep std::exp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sb::ops {

inline float FastExp(float x_in) {
  // Written so that GCC vectorises it (with -fno-trapping-math): min/max
  // clamps, round-to-nearest by the 1.5 * 2^23 trick, no branches, no calls.
  // max(-87.3, NaN) is -87.3, so a NaN input never reaches the int
  // conversion below (undefined behaviour); it is passed through at the end,
  // so that a NaN logit still makes the loss NaN (the trainer skips that step).
  const float x = std::min(std::max(-87.3f, x_in), 88.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // Cody-Waite: ln 2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  return x_in != x_in ? x_in : e * __builtin_bit_cast(float, bits);
}

inline double FastExp(double x) { return std::exp(x); }

}  // namespace sb::ops
