// Helpers shared by the optim/ tests: deterministic inputs, tensor <-> double
// vectors, and comparisons that print the worst element on failure.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "moe/core/parameter.h"
#include "moe/core/rng.h"
#include "moe/ops/ops.h"

namespace sb::optim_test {

// Unit roundoff scale of a float dtype (machine epsilon).
inline double Eps(DType dtype) {
  return dtype == DType::kF32 ? std::numeric_limits<float>::epsilon()
                              : std::numeric_limits<double>::epsilon();
}

// n standard-normal draws times `std` from counter stream `key`.
inline std::vector<double> Normal(uint64_t key, int64_t n, double std = 1.0) {
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = std * NormalAt(key, i);
  return out;
}

// Writes doubles into a CPU f32/f64 tensor (rounding to its dtype).
inline void SetValues(const Tensor& t, const std::vector<double>& values) {
  ops::Convert(Tensor::FromVector(values, t.shape()), t);
}

// A deep copy (same shape and dtype, own memory).
inline Tensor Clone(const Tensor& t) {
  Tensor out = Tensor::Empty(t.shape(), t.dtype(), t.device());
  ops::Copy(t, out);
  return out;
}

// |actual_i - expected_i| <= tol_i for every i; otherwise reports how many
// elements fail and the worst one (largest |diff| / tol).
inline ::testing::AssertionResult AllClose(const std::vector<double>& expected,
                                           const std::vector<double>& actual,
                                           const std::vector<double>& tol) {
  if (expected.size() != actual.size() || expected.size() != tol.size()) {
    return ::testing::AssertionFailure() << "size mismatch: expected " << expected.size()
                                         << ", actual " << actual.size() << ", tol " << tol.size();
  }
  size_t bad = 0, worst = 0;
  double worst_ratio = -1.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double diff = std::fabs(actual[i] - expected[i]);
    const double ratio = diff == 0 ? 0.0 : diff / tol[i];
    if (!(diff <= tol[i])) ++bad;
    if (!(ratio <= worst_ratio)) {  // NaN counts as worst
      worst_ratio = ratio;
      worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream s;
  s.precision(17);
  s << bad << " of " << expected.size() << " elements out of tolerance; worst at [" << worst
    << "]: expected " << expected[worst] << ", actual " << actual[worst] << ", |diff| "
    << std::fabs(actual[worst] - expected[worst]) << " > tol " << tol[worst];
  return ::testing::AssertionFailure() << s.str();
}

// Same as above with one tolerance for every element.
inline ::testing::AssertionResult AllClose(const std::vector<double>& expected,
                                           const std::vector<double>& actual, double tol) {
  return AllClose(expected, actual, std::vector<double>(expected.size(), tol));
}

// Identical dtype, shape and bytes; otherwise reports the first differing element.
inline ::testing::AssertionResult BitwiseEqual(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) {
    return ::testing::AssertionFailure() << a.ToString() << " vs " << b.ToString();
  }
  if (std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0) return ::testing::AssertionSuccess();
  const std::vector<double> x = a.ToDoubles(), y = b.ToDoubles();
  size_t first = 0;
  while (first < x.size() && std::memcmp(&x[first], &y[first], sizeof(double)) == 0) ++first;
  std::ostringstream s;
  s.precision(17);
  s << "bytes differ; first differing element [" << first << "]: " << x[first] << " vs "
    << y[first];
  return ::testing::AssertionFailure() << s.str();
}

}  // namespace sb::optim_test
