// LearningRate at the steps that matter (first, last warmup step, first
// step after warmup, middle, last, past the end) for every schedule kind.
// Steps are 0-based; n = step + 1 is the number of updates including this one.
#include "optim/schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace sb {
namespace {

using Kind = switchboard::ScheduleConfig;
constexpr double kPi = 3.14159265358979323846;
constexpr double kTol = 1e-12;

Kind Schedule(Kind::Kind kind, int64_t warmup, double min_ratio = 0.1, int64_t decay_steps = 0) {
  Kind s;
  s.set_kind(kind);
  s.set_warmup_steps(warmup);
  s.set_min_lr_ratio(min_ratio);
  s.set_decay_steps(decay_steps);
  return s;
}

// lr * (r + (1 - r) * (1 + cos(pi * p)) / 2)
double Cosine(double lr, double r, double p) { return lr * (r + (1 - r) * 0.5 * (1 + std::cos(kPi * p))); }

TEST(ScheduleTest, CosineKeySteps) {
  // peak 2.0, warmup 10, 110 steps: decay over n = 10 .. 110, i.e. D = 100.
  const Kind s = Schedule(Kind::COSINE, 10, 0.1);
  auto lr = [&](int64_t step) { return LearningRate(s, 2.0, step, 110); };
  EXPECT_NEAR(lr(0), 2.0 * 1 / 10, kTol);           // first update: lr / warmup
  EXPECT_NEAR(lr(4), 2.0 * 5 / 10, kTol);
  EXPECT_NEAR(lr(9), 2.0, kTol);                    // warmup - 1: the peak
  EXPECT_NEAR(lr(10), Cosine(2.0, 0.1, 1.0 / 100), kTol);  // one step into the decay
  EXPECT_LT(lr(10), lr(9));
  EXPECT_GT(lr(10), 2.0 * 0.999);                   // no jump at the boundary
  EXPECT_NEAR(lr(59), 2.0 * 0.55, kTol);            // n = 60: halfway, (1 + 0.1) / 2
  EXPECT_NEAR(lr(108), Cosine(2.0, 0.1, 99.0 / 100), kTol);
  EXPECT_NEAR(lr(109), 2.0 * 0.1, kTol);            // last step (total - 1): the floor
  EXPECT_NEAR(lr(110), 2.0 * 0.1, kTol);            // past the end: stays at the floor
  EXPECT_NEAR(lr(100000), 2.0 * 0.1, kTol);
  // Monotone: up through warmup, down after.
  for (int64_t step = 1; step < 130; ++step) {
    if (step < 10) {
      EXPECT_GT(lr(step), lr(step - 1)) << step;
    } else {
      EXPECT_LE(lr(step), lr(step - 1)) << step;
    }
  }
}

TEST(ScheduleTest, CosineExplicitDecayStepsAndNoWarmup) {
  // decay_steps = 50 overrides total_steps: floor from n = 10 + 50.
  const Kind s = Schedule(Kind::COSINE, 10, 0.0, 50);
  EXPECT_NEAR(LearningRate(s, 1.0, 34, 1000), 0.5, kTol);  // n = 35: p = 1/2
  EXPECT_NEAR(LearningRate(s, 1.0, 59, 1000), 0.0, kTol);
  EXPECT_NEAR(LearningRate(s, 1.0, 500, 1000), 0.0, kTol);
  // No warmup: decay starts with the first update (p = 1 / total).
  const Kind none = Schedule(Kind::COSINE, 0, 0.1);
  EXPECT_NEAR(LearningRate(none, 1.0, 0, 100), Cosine(1.0, 0.1, 0.01), kTol);
  EXPECT_NEAR(LearningRate(none, 1.0, 49, 100), 0.55, kTol);
  EXPECT_NEAR(LearningRate(none, 1.0, 99, 100), 0.1, kTol);
  // A run no longer than its warmup has nothing to decay over: the floor.
  const Kind long_warmup = Schedule(Kind::COSINE, 10, 0.1);
  EXPECT_NEAR(LearningRate(long_warmup, 1.0, 9, 10), 1.0, kTol);
  EXPECT_NEAR(LearningRate(long_warmup, 1.0, 10, 10), 0.1, kTol);
}

TEST(ScheduleTest, InverseSqrtKeySteps) {
  const Kind s = Schedule(Kind::INVERSE_SQRT, 16);
  auto lr = [&](int64_t step) { return LearningRate(s, 1.0, step, 1000); };
  EXPECT_NEAR(lr(0), 1.0 / 16, kTol);
  EXPECT_NEAR(lr(15), 1.0, kTol);                    // warmup - 1: sqrt(16 / 16)
  EXPECT_NEAR(lr(16), std::sqrt(16.0 / 17.0), kTol);
  EXPECT_NEAR(lr(63), 0.5, kTol);                    // n = 64
  EXPECT_NEAR(lr(255), 0.25, kTol);                  // n = 256
  EXPECT_NEAR(lr(999), std::sqrt(16.0 / 1000.0), kTol);
  EXPECT_NEAR(lr(1599), 0.1, kTol);                  // past total_steps: keeps decaying
  // Without warmup: lr / sqrt(n).
  const Kind none = Schedule(Kind::INVERSE_SQRT, 0);
  EXPECT_NEAR(LearningRate(none, 1.0, 0, 10), 1.0, kTol);
  EXPECT_NEAR(LearningRate(none, 1.0, 3, 10), 0.5, kTol);
}

TEST(ScheduleTest, ConstantKeySteps) {
  const Kind s = Schedule(Kind::CONSTANT, 4);
  EXPECT_NEAR(LearningRate(s, 3e-4, 0, 100), 3e-4 / 4, kTol);
  EXPECT_NEAR(LearningRate(s, 3e-4, 2, 100), 3e-4 * 3 / 4, kTol);
  EXPECT_NEAR(LearningRate(s, 3e-4, 3, 100), 3e-4, kTol);
  EXPECT_NEAR(LearningRate(s, 3e-4, 4, 100), 3e-4, kTol);
  EXPECT_NEAR(LearningRate(s, 3e-4, 99, 100), 3e-4, kTol);
  EXPECT_NEAR(LearningRate(s, 3e-4, 5000, 100), 3e-4, kTol);
  EXPECT_EQ(LearningRate(Schedule(Kind::CONSTANT, 0), 3e-4, 0, 100), 3e-4);
}

TEST(ScheduleTest, ProtoDefaults) {
  // Defaults: COSINE, warmup 100, min ratio 0.1, decay until total_steps.
  const Kind s;
  EXPECT_NEAR(LearningRate(s, 1.0, 99, 1100), 1.0, kTol);
  EXPECT_NEAR(LearningRate(s, 1.0, 599, 1100), 0.55, kTol);
  EXPECT_NEAR(LearningRate(s, 1.0, 1099, 1100), 0.1, kTol);
}

}  // namespace
}  // namespace sb
