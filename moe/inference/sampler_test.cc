// Sampling: greedy is the argmax (lower id on ties), top-k / top-p keep what
// transformers' warpers keep, draws follow the distribution (a chi-square
// bound over 20k draws) and are reproducible from the seed.
#include "moe/inference/sampler.h"

#include <cmath>

#include "gtest/gtest.h"

namespace sb {
namespace {

const std::vector<double> kLogits = {1.0, 3.0, 2.0, 3.0, -1.0, 0.5};

TEST(Sampler, GreedyIsArgmaxLowerIdOnTies) {
  EXPECT_EQ(SampleToken(kLogits, {}, 0), 1);
  SamplingOptions o;
  o.temperature = 0.7;
  o.top_k = 1;
  EXPECT_EQ(SampleToken(kLogits, o, 5), 1);  // top-1 keeps the first of the tied best
}

TEST(Sampler, TopKAndTopPKeepTheMostLikely) {
  SamplingOptions o;
  o.temperature = 1.0;
  o.top_k = 3;
  std::vector<double> p = SamplingDistribution(kLogits, o);
  // Kept: ids 1, 3 (logit 3) and 2 (logit 2), renormalised.
  const double z = 2 * std::exp(3.0) + std::exp(2.0);
  EXPECT_NEAR(p[1], std::exp(3.0) / z, 1e-15);
  EXPECT_NEAR(p[2], std::exp(2.0) / z, 1e-15);
  EXPECT_EQ(p[0] + p[4] + p[5], 0.0);
  // top_p: ids 1 and 3 hold exp(3) * 2 / Z of the full softmax.
  o.top_k = 0;
  double full = 0;
  for (double l : kLogits) full += std::exp(l);
  o.top_p = 2 * std::exp(3.0) / full - 1e-9;  // reached after two tokens
  p = SamplingDistribution(kLogits, o);
  EXPECT_NEAR(p[1], 0.5, 1e-15);
  EXPECT_NEAR(p[3], 0.5, 1e-15);
  o.top_p = 2 * std::exp(3.0) / full + 1e-9;  // needs the third
  p = SamplingDistribution(kLogits, o);
  EXPECT_GT(p[2], 0.0);
  EXPECT_EQ(p[0], 0.0);
  o.top_p = 1e-6;  // always at least one token
  p = SamplingDistribution(kLogits, o);
  EXPECT_EQ(p[1], 1.0);
}

TEST(Sampler, DrawsFollowTheDistributionAndTheSeed) {
  SamplingOptions o;
  o.temperature = 1.3;
  o.seed = 42;
  const std::vector<double> p = SamplingDistribution(kLogits, o);
  const int n = 20000;
  std::vector<int> counts(kLogits.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[SampleToken(kLogits, o, i)];
  double chi2 = 0;
  for (size_t i = 0; i < p.size(); ++i) chi2 += std::pow(counts[i] - n * p[i], 2) / (n * p[i]);
  EXPECT_LT(chi2, 20.5) << "chi-square with 5 degrees of freedom (p = 0.001)";
  EXPECT_EQ(SampleToken(kLogits, o, 17), SampleToken(kLogits, o, 17));
  int differ = 0;
  SamplingOptions other = o;
  other.seed = 43;
  for (int i = 0; i < 100; ++i) differ += SampleToken(kLogits, o, i) != SampleToken(kLogits, other, i);
  EXPECT_GT(differ, 20);
}

}  // namespace
}  // namespace sb
