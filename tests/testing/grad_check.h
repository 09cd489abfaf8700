// Test helpers: random tensors and finite-difference gradient checks.
// Gradient checks run in f64 so that central differences are accurate to
// ~1e-9 relative; the tolerance below is derived from that, not guessed:
// truncation error ~ eps^2 * |f'''| and rounding ~ 1e-16 * |L| / eps.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moe/core/rng.h"
#include "moe/core/tensor.h"

namespace sb::testing {

// A CPU f64 (or f32) tensor with N(0, std^2) entries from stream `seed`.
inline Tensor RandomTensor(const Shape& shape, uint64_t seed, double std = 1.0,
                           DType dtype = DType::kF64) {
  Tensor t = Tensor::Empty(shape, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = std * NormalAt(StreamKey({seed, 77}), static_cast<uint64_t>(i));
    if (dtype == DType::kF64) t.data<double>()[i] = v; else t.data<float>()[i] = static_cast<float>(v);
  }
  return t;
}

inline void FillRandom(const Tensor& t, uint64_t seed, double std = 1.0) {
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<double>()[i] = std * NormalAt(StreamKey({seed, 78}), static_cast<uint64_t>(i));
}

// The values of an integer (or any) tensor as ints: for comparing routing decisions.
inline std::vector<int> IntsOf(const Tensor& t) {
  std::vector<int> v;
  for (double x : t.ToDoubles()) v.push_back(static_cast<int>(x));
  return v;
}

// sum(a * b) in f64.
inline double DotAll(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.ToDoubles(), y = b.ToDoubles();
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

struct GradCheckOptions {
  double eps = 1e-5;   // central-difference step
  double rtol = 1e-6;  // relative to max(|analytic|, |numeric|)
  double atol = 1e-8;  // absolute floor (for gradients ~0)
  int64_t max_elements = 4096;  // check a strided subset of larger tensors
};

// Compares `analytic` (f64, same shape as `value`) with central differences
// of loss() w.r.t. every (or a strided subset of) element of `value`.
// loss() must be a deterministic function of the current contents of value.
inline void ExpectGradientMatches(const std::string& name, const Tensor& value,
                                  const Tensor& analytic, const std::function<double()>& loss,
                                  const GradCheckOptions& opt = {}) {
  ASSERT_EQ(value.dtype(), DType::kF64) << name;
  ASSERT_EQ(value.shape(), analytic.shape()) << name;
  double* v = value.data<double>();
  const double* g = analytic.data<double>();
  const int64_t n = value.numel();
  const int64_t stride = std::max<int64_t>(1, n / opt.max_elements);
  int64_t worst = -1;
  double worst_excess = 0, worst_num = 0;
  int64_t failures = 0;
  for (int64_t i = 0; i < n; i += stride) {
    const double saved = v[i];
    v[i] = saved + opt.eps;
    const double plus = loss();
    v[i] = saved - opt.eps;
    const double minus = loss();
    v[i] = saved;
    const double numeric = (plus - minus) / (2 * opt.eps);
    const double tol = opt.atol + opt.rtol * std::max(std::abs(numeric), std::abs(g[i])) +
                       1e-15 * std::abs(plus) / opt.eps;
    const double excess = std::abs(numeric - g[i]) - tol;
    if (excess > 0) {
      ++failures;
      if (worst < 0 || excess > worst_excess) {
        worst = i;
        worst_excess = excess;
        worst_num = numeric;
      }
    }
  }
  EXPECT_EQ(failures, 0) << name << ": " << failures << " elements off; worst index " << worst
                         << " analytic " << (worst >= 0 ? g[worst] : 0.0) << " numeric "
                         << worst_num;
}

// Max |a - b| over elements, and the index where it occurs.
struct MaxDiff {
  double value = 0;
  int64_t index = -1;
  double a = 0, b = 0;
};
inline MaxDiff MaxAbsDiff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.ToDoubles(), y = b.ToDoubles();
  MaxDiff d;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    const double e = std::abs(x[i] - y[i]);
    if (d.index < 0 || e > d.value) d = {e, static_cast<int64_t>(i), x[i], y[i]};
  }
  return d;
}

// EXPECT that actual and expected agree within tol everywhere; prints the
// worst element.
#define SB_EXPECT_TENSOR_NEAR(actual, expected, tol)                                  \
  do {                                                                                \
    ASSERT_EQ((actual).numel(), (expected).numel());                                  \
    const ::sb::testing::MaxDiff sb_d = ::sb::testing::MaxAbsDiff((actual), (expected)); \
    EXPECT_LE(sb_d.value, (tol)) << "worst index " << sb_d.index << ": " << sb_d.a    \
                                 << " vs expected " << sb_d.b;                        \
  } while (0)

}  // namespace sb::testing
