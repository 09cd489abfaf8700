// GradSquaredNorm and ClipGradients: exact small cases, the clip threshold
// from both sides, disabled clipping, and thread-count independence.
#include "optim/grad_clip.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "optim/test_util.h"

namespace sb {
namespace {

using optim_test::AllClose;
using optim_test::Eps;
using optim_test::Normal;
using optim_test::SetValues;

// f32 grads (1, 2, 2) and f64 grads (1, 1, 1, 1): squared norm 9 + 4 = 13.
struct TwoParams {
  Parameter a = MakeParameter("a", ParamKind::kWeight, {3}, DType::kF32, Device::kCpu);
  Parameter b = MakeParameter("b", ParamKind::kNorm, {2, 2}, DType::kF64, Device::kCpu);
  TwoParams() {
    SetValues(a.grad, {1.0, 2.0, -2.0});
    SetValues(b.grad, {1.0, -1.0, 1.0, 1.0});
  }
  std::vector<Parameter*> all() { return {&a, &b}; }
};

TEST(GradClipTest, SquaredNormExact) {
  TwoParams p;
  EXPECT_EQ(GradSquaredNorm(p.all()), 13.0);
  EXPECT_EQ(GradSquaredNorm({}), 0.0);
}

TEST(GradClipTest, SquaredNormLargeMatchesF64SumAndIgnoresThreads) {
  Parameter big = MakeParameter("big", ParamKind::kWeight, {300, 401}, DType::kF32, Device::kCpu);
  SetValues(big.grad, Normal(5, big.grad.numel()));
  double want = 0.0;
  for (double g : big.grad.ToDoubles()) want += g * g;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = GradSquaredNorm({&big});
  omp_set_num_threads(2);
  const double two = GradSquaredNorm({&big});
  omp_set_num_threads(saved);
  // f64 accumulation of f32 squares (exact in f64): error ~ n eps64 * sum.
  EXPECT_NEAR(one, want, big.grad.numel() * Eps(DType::kF64) * want);
  EXPECT_EQ(one, two);  // bitwise: fixed summation order
}

TEST(GradClipTest, BelowThresholdLeavesGradsAlone) {
  TwoParams p;
  const double norm = std::sqrt(GradSquaredNorm(p.all()));
  EXPECT_EQ(ClipGradients(p.all(), norm, 5.0), 1.0);
  EXPECT_EQ(p.a.grad.ToDoubles(), (std::vector<double>{1.0, 2.0, -2.0}));
  EXPECT_EQ(p.b.grad.ToDoubles(), (std::vector<double>{1.0, -1.0, 1.0, 1.0}));
}

TEST(GradClipTest, AboveThresholdScalesToMaxNorm) {
  TwoParams p;
  const double norm = std::sqrt(13.0);
  const double scale = ClipGradients(p.all(), norm, 1.5);
  EXPECT_DOUBLE_EQ(scale, 1.5 / (norm + 1e-6));
  // Each tensor scaled in its own dtype.
  const float sf = static_cast<float>(scale);
  EXPECT_EQ(p.a.grad.ToDoubles(), (std::vector<double>{sf * 1.0f, sf * 2.0f, sf * -2.0f}));
  EXPECT_TRUE(AllClose({scale, -scale, scale, scale}, p.b.grad.ToDoubles(), 0.0));
  // The clipped norm is max_norm up to the 1e-6 guard and f32 rounding.
  EXPECT_NEAR(std::sqrt(GradSquaredNorm(p.all())), 1.5, 1e-6 + 4 * Eps(DType::kF32));
}

TEST(GradClipTest, DisabledByNonPositiveMaxNorm) {
  for (double max_norm : {0.0, -1.0}) {
    TwoParams p;
    EXPECT_EQ(ClipGradients(p.all(), std::sqrt(13.0), max_norm), 1.0);
    EXPECT_EQ(p.a.grad.ToDoubles(), (std::vector<double>{1.0, 2.0, -2.0}));
  }
}

TEST(GradClipTest, NanNormPropagates) {
  TwoParams p;
  EXPECT_TRUE(std::isnan(ClipGradients(p.all(), std::nan(""), 1.0)));
  EXPECT_TRUE(std::isnan(p.a.grad.ToDoubles()[0]));
}

}  // namespace
}  // namespace sb
