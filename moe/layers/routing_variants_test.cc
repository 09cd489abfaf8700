// Routing variants on small hand-computed cases (docs/moe_semantics.md,
// "Routing variants"); their gradients are checked in layers_grad_test.cc.
#include <cmath>

#include "gtest/gtest.h"
#include "moe/core/rng.h"
#include "moe/layers/moe_layer.h"
#include "moe/ops/ops.h"
#include "tests/testing/grad_check.h"

namespace sb {
namespace {

using testing::IntsOf;

TEST(BiasedTopK, BiasChoosesButGatesStayUnbiased) {
  // scores = probs + bias = [0.5, 0.3, 0.55] and [0.1, 0.7, 0.55]; ties to the lower id.
  Tensor probs = Tensor::FromVector<double>({0.5, 0.3, 0.2, 0.1, 0.7, 0.2}, {2, 3});
  Tensor bias = Tensor::FromVector<double>({0.0, 0.0, 0.35}, {3});
  Tensor ids = Tensor::Empty({2, 2}, DType::kI32), vals = Tensor::Empty({2, 2}, DType::kF64);
  ops::BiasedTopK(probs, bias, 2, ids, vals);
  EXPECT_EQ(IntsOf(ids), (std::vector<int>{2, 0, 1, 2}));
  EXPECT_EQ(vals.ToDoubles(), (std::vector<double>{0.2, 0.5, 0.7, 0.2}));
  // A zero bias is plain TopK.
  ops::Fill(bias, 0.0);
  Tensor ids2 = Tensor::Empty({2, 2}, DType::kI32), vals2 = Tensor::Empty({2, 2}, DType::kF64);
  ops::BiasedTopK(probs, bias, 2, ids, vals);
  ops::TopK(probs, 2, ids2, vals2);
  EXPECT_EQ(IntsOf(ids), IntsOf(ids2));
}

TEST(SampleSecondExpert, KeepsSecondWhenUniformBelowTwiceItsNormalisedGate) {
  // g2 = p2 / (p1 + p2): 0.5 (always kept), 0 (never), and 0.2 (u < 0.4).
  const int64_t T = 400;
  std::vector<double> p;
  for (int64_t t = 0; t < T; ++t) {
    const double p2 = t == 0 ? 0.3 : t == 1 ? 0.0 : 0.1;
    const double p1 = t == 0 ? 0.3 : t == 1 ? 0.6 : 0.4;
    p.push_back(p1);
    p.push_back(p2);
  }
  Tensor topk = Tensor::FromVector(p, {T, 2});
  Tensor active = Tensor::Empty({T, 2}, DType::kI32);
  const uint64_t key = StreamKey({3, 4});
  ops::SampleSecondExpert(topk, key, active);
  const std::vector<int> a = IntsOf(active);
  EXPECT_EQ(a[1], 1);
  EXPECT_EQ(a[3], 0);
  int kept = 0;
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_EQ(a[2 * t], 1) << "first choices are always dispatched";
    if (t >= 2) {
      EXPECT_EQ(a[2 * t + 1], UniformAt(key, t) < 0.4 ? 1 : 0) << t;
      kept += a[2 * t + 1];
    }
  }
  // 398 Bernoulli(0.4) draws: 159 expected, sd ~10.
  EXPECT_NEAR(kept, 0.4 * (T - 2), 40);
}

TEST(PriorityOrder, DescendingFirstChoiceProbTiesToLowerToken) {
  Tensor topk = Tensor::FromVector<double>({0.3, 0.1, 0.9, 0.05, 0.3, 0.2, 0.5, 0.4}, {4, 2});
  Tensor order = Tensor::Empty({4}, DType::kI32);
  ops::PriorityOrder(topk, order);
  EXPECT_EQ(IntsOf(order), (std::vector<int>{1, 3, 0, 2}));
}

TEST(AssignSlotsOrdered, PriorityWithinChoiceRankAndInactiveChoices) {
  // 4 tokens, 2 experts, capacity 2, priority t2, t3, t0, t1.
  //   rank 0: t2->e0 (slot 0), t3->e1 (0), t0->e0 (1), t1->e0 (full)
  //   rank 1: t2->e1 (1), t3->e0 inactive, t0->e1 (full), t1->e1 (full)
  Tensor ids = Tensor::FromVector<int32_t>({0, 1, 0, 1, 0, 1, 1, 0}, {4, 2});
  Tensor order = Tensor::FromVector<int32_t>({2, 3, 0, 1}, {4});
  Tensor active = Tensor::FromVector<int32_t>({1, 1, 1, 1, 1, 1, 1, 0}, {4, 2});
  Tensor slot = Tensor::Empty({4, 2}, DType::kI32);
  Tensor routed = Tensor::Empty({2}, DType::kI32), kept = Tensor::Empty({2}, DType::kI32);
  ops::AssignSlotsOrdered(ids, &order, &active, 2, 2, slot, routed, kept);
  EXPECT_EQ(IntsOf(slot), (std::vector<int>{1, -1, -1, -1, 0, 1, 0, -1}));
  EXPECT_EQ(IntsOf(routed), (std::vector<int>{3, 4}));  // the inactive choice is not routed
  EXPECT_EQ(IntsOf(kept), (std::vector<int>{2, 2}));
  // Without order and mask it is AssignSlots.
  Tensor slot2 = Tensor::Empty({4, 2}, DType::kI32);
  ops::AssignSlotsOrdered(ids, nullptr, nullptr, 2, 2, slot, routed, kept);
  ops::AssignSlots(ids, 2, 2, slot2, routed, kept);
  EXPECT_EQ(IntsOf(slot), IntsOf(slot2));
}

TEST(ExpertChoice, EachExpertTakesItsTopCTokensTiesToLowerToken) {
  // 4 tokens x 2 experts, C = 2. e0 takes t1 (0.7), then t0 / t3 tie at 0.6 -> t0.
  // e1 takes t2 (0.9), then t0 / t3 tie at 0.4 -> t0.
  Tensor probs = Tensor::FromVector<double>({0.6, 0.4, 0.7, 0.3, 0.1, 0.9, 0.6, 0.4}, {4, 2});
  Tensor ids = Tensor::Empty({4, 2}, DType::kI32), slot = Tensor::Empty({4, 2}, DType::kI32);
  Tensor kept = Tensor::Empty({2}, DType::kI32);
  ops::ExpertChoice(probs, 2, ids, slot, kept);
  EXPECT_EQ(IntsOf(ids), (std::vector<int>{0, 1, 0, 1, 0, 1, 0, 1}));
  // t0 gets e0 (rank 1) and e1 ties t3 at 0.4 -> t0 wins (rank 1), so t3 gets nothing.
  EXPECT_EQ(IntsOf(slot), (std::vector<int>{1, 1, 0, -1, -1, 0, -1, -1}));
  EXPECT_EQ(IntsOf(kept), (std::vector<int>{2, 2}));
  // A capacity beyond T takes every token.
  ops::ExpertChoice(probs, 9, ids, slot, kept);
  EXPECT_EQ(IntsOf(kept), (std::vector<int>{4, 4}));
}

TEST(NoisyLogits, SoftplusScaleAndNoNoiseInEvaluation) {
  Tensor clean = Tensor::FromVector<double>({1.0, -2.0}, {1, 2});
  Tensor raw = Tensor::FromVector<double>({0.0, 50.0}, {1, 2});
  Tensor normal = Tensor::Empty({1, 2}, DType::kF64), sd = Tensor::Empty({1, 2}, DType::kF64);
  Tensor noisy = Tensor::Empty({1, 2}, DType::kF64);
  ops::NoisyLogits(clean, raw, 7, /*sample=*/false, normal, sd, noisy);
  EXPECT_DOUBLE_EQ(sd.ToDoubles()[0], std::log(2.0));
  EXPECT_DOUBLE_EQ(sd.ToDoubles()[1], 50.0);  // no overflow
  EXPECT_EQ(noisy.ToDoubles(), clean.ToDoubles());
  ops::NoisyLogits(clean, raw, 7, /*sample=*/true, normal, sd, noisy);
  EXPECT_DOUBLE_EQ(normal.ToDoubles()[1], NormalAt(7, 1));
  EXPECT_DOUBLE_EQ(noisy.ToDoubles()[0], 1.0 + NormalAt(7, 0) * std::log(2.0));
}

TEST(NoisyTopKBalanceLoss, CvSquaredOfImportanceAndLoad) {
  // 3 tokens, 3 experts, top-1, zero noise std would divide by 0: std = 1.
  Tensor clean = Tensor::FromVector<double>({2, 1, 0, 0, 3, 1, 1, 0, 2}, {3, 3});
  Tensor sd = Tensor::Zeros({3, 3}, DType::kF64);
  ops::Fill(sd, 1.0);
  Tensor ids = Tensor::FromVector<int32_t>({0, 1, 2}, {3, 1});
  Tensor gates = Tensor::FromVector<double>({0.5, 0.7, 0.6}, {3, 1});
  // Load: in-top-1 experts compare with the 2nd largest, others with the 1st.
  auto phi = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  const double load[3] = {phi(2 - 1) + phi(0 - 3) + phi(1 - 2), phi(1 - 2) + phi(3 - 1) + phi(0 - 2),
                          phi(0 - 2) + phi(1 - 3) + phi(2 - 1)};
  const double imp[3] = {0.5, 0.7, 0.6};
  auto cv2 = [](const double* v) {
    const double m = (v[0] + v[1] + v[2]) / 3;
    const double var = ((v[0] - m) * (v[0] - m) + (v[1] - m) * (v[1] - m) + (v[2] - m) * (v[2] - m)) / 3;
    return var / (m * m + 1e-10);
  };
  const double loss = ops::NoisyTopKBalanceLoss(gates, ids, clean, clean, sd, 0.0, Tensor(),
                                                Tensor(), Tensor(), Tensor());
  EXPECT_NEAR(loss, cv2(imp) + cv2(load), 1e-14);
}

TEST(KeyedDropout, SameKeysSameMaskInvertedScale) {
  Tensor ids = Tensor::FromVector<int32_t>({0, 1, 1, 0}, {2, 2});
  Tensor choice = Tensor::FromVector<int32_t>({0, 3, 1}, {3});  // (t0, e0), (t1, e0), (t0, e1)
  Tensor keys = Tensor::Empty({3, 4}, DType::kF32);
  ops::ExpertRowKeys(ids, choice, 99, keys);
  const std::vector<double> k = keys.ToDoubles();
  for (double chunk : k) EXPECT_TRUE(chunk >= 0 && chunk < 65536 && chunk == std::floor(chunk));
  uint64_t first = 0;
  for (int q = 0; q < 4; ++q) first |= static_cast<uint64_t>(k[q]) << (16 * q);
  EXPECT_EQ(first, StreamKey({99, 0, 0}));
  Tensor x = Tensor::Zeros({3, 2000}, DType::kF32);
  ops::Fill(x, 1.0);
  ops::KeyedDropout(keys, 0.25, x);
  const std::vector<double> v = x.ToDoubles();
  int zeros = 0;
  for (double e : v) {
    EXPECT_TRUE(e == 0.0 || std::abs(e - 1.0 / 0.75) < 1e-6) << e;
    zeros += e == 0.0;
  }
  EXPECT_NEAR(zeros / 6000.0, 0.25, 0.02);
  // Applying again with the same keys zeroes the same units (backward's mask).
  Tensor y = Tensor::Zeros({3, 2000}, DType::kF32);
  ops::Fill(y, 1.0);
  ops::KeyedDropout(keys, 0.25, y);
  EXPECT_EQ(y.ToDoubles(), v);
}

TEST(Router, SelectionBiasMovesAgainstTheLoad) {
  RouterOptions o;
  o.num_experts = 4;
  o.aux_free_bias_rate = 0.01;
  Router router("r.", 2, o, DType::kF64, Device::kCpu);
  ASSERT_NE(router.selection_bias, nullptr);
  EXPECT_EQ(router.selection_bias->name, "r.gate.e_score_correction_bias");
  EXPECT_EQ(router.Buffers().size(), 1u);
  EXPECT_EQ(router.Parameters().size(), 1u) << "the bias is not trained";
  const double load[4] = {3, 1, 2, 4};  // mean 2.5
  router.UpdateSelectionBias(load);
  EXPECT_EQ(router.selection_bias->value.ToDoubles(), (std::vector<double>{-0.01, 0.01, 0.01, -0.01}));
  const double balanced[4] = {2, 2, 2, 2};
  router.UpdateSelectionBias(balanced);
  EXPECT_EQ(router.selection_bias->value.ToDoubles(), (std::vector<double>{-0.01, 0.01, 0.01, -0.01}));
  EXPECT_DOUBLE_EQ(LoadMaxOverMean(load, 4), 4 / 2.5);
}

TEST(Router, ExpertChoiceStatsAndRandomSecondExpertOnlyInTraining) {
  RouterOptions o;
  o.num_experts = 4;
  o.top_k = 2;
  o.routing = RoutingMode::kExpertChoice;
  o.capacity_factor_train = 0.5;  // C = max(1, ceil(0.5 * 2 * 8 / 4)) = 2
  o.min_capacity = 1;
  Router ec("r.", 3, o, DType::kF64, Device::kCpu);
  testing::FillRandom(ec.weight.value, 5, 1.0);
  Tensor x = testing::RandomTensor({8, 3}, 6);
  const Routing& r = ec.Forward(x, StepContext{}, 0);
  EXPECT_EQ(r.capacity, 2);
  EXPECT_EQ(r.choices_per_token(), 4);
  EXPECT_EQ(ec.stats().kept, (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(ec.stats().aux_loss, 0.0);
  int covered = 0;
  const std::vector<double> slots = r.slots.ToDoubles();
  for (int t = 0; t < 8; ++t) {
    bool any = false;
    for (int e = 0; e < 4; ++e) any |= slots[t * 4 + e] >= 0;
    covered += any;
  }
  EXPECT_DOUBLE_EQ(ec.stats().dropped_fraction, 1.0 - covered / 8.0);

  RouterOptions g;
  g.num_experts = 4;
  g.top_k = 2;
  g.capacity_factor_train = 0;
  g.random_second_expert = true;
  Router gshard("g.", 3, g, DType::kF64, Device::kCpu);
  testing::FillRandom(gshard.weight.value, 7, 0.3);
  Tensor many = testing::RandomTensor({200, 3}, 8);
  StepContext train;
  train.seed = 11;
  gshard.Forward(many, train, 2);
  int64_t routed = 0;
  for (int64_t c : gshard.stats().routed) routed += c;
  EXPECT_GT(routed, 200);
  EXPECT_LT(routed, 400) << "some second choices should be skipped";
  EXPECT_EQ(gshard.stats().dropped_fraction, 0.0) << "a skipped choice is not a drop";
  StepContext eval = train;
  eval.training = false;
  gshard.Forward(many, eval, 2);
  routed = 0;
  for (int64_t c : gshard.stats().routed) routed += c;
  EXPECT_EQ(routed, 400) << "evaluation dispatches every choice";
}

}  // namespace
}  // namespace sb
