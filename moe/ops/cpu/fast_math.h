// Vectorisable exp for the CPU kernels' hot loops (softmax, cross-entropy,
// attention). std::exp is a scalar libm call that GCC cannot vectorise
// without -ffast-math; this is Cephes' expf (Moshier): Cody-Waite range
// reduction, degree-5 minimax polynomial, 2^n by exponent bits. Max relative
// error ~2 ulp on [-87, 88]; results for x < -87.3 are ~1e-38 rather than
// denormal or 0, which softmax sums cannot tell apart. Doubles (gradient
// checks) keep std::exp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace sb::ops {

inline float FastExp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  // n = round(x / ln 2) via truncation (SSE2-friendly floor(y + 0.5)).
  const float y = x * 1.44269504088896341f + 0.5f;
  float n = static_cast<float>(static_cast<int32_t>(y));
  n -= (y < n) ? 1.0f : 0.0f;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}

inline double FastExp(double x) { return std::exp(x); }

}  // namespace sb::ops
