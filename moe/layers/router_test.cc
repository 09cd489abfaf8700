// Router semantics on small hand-computed cases (docs/moe_semantics.md).
#include "moe/layers/router.h"

#include <cmath>

#include "gtest/gtest.h"
#include "moe/ops/ops.h"
#include "tests/testing/grad_check.h"

namespace sb {
namespace {

using testing::IntsOf;

TEST(Capacity, FormulaMinimumAndDropless) {
  EXPECT_EQ(ExpertCapacity(1.25, 2, 10, 4, 4), 7);   // ceil(1.25 * 2 * 10 / 4) = ceil(6.25)
  EXPECT_EQ(ExpertCapacity(1.0, 1, 16, 4, 0), 4);    // exact division
  EXPECT_EQ(ExpertCapacity(1.25, 2, 2, 4, 4), 4);    // min_capacity binds (ceil(1.25) = 2)
  EXPECT_EQ(ExpertCapacity(0.0, 2, 10, 4, 4), -1);   // dropless
  EXPECT_EQ(ExpertCapacity(-1.0, 2, 10, 4, 4), -1);
  EXPECT_EQ(ExpertCapacity(100.0, 2, 10, 4, 4), 500);  // larger than T is fine
}

TEST(TopK, DescendingWithTiesToLowerId) {
  Tensor probs = Tensor::FromVector<double>({0.25, 0.25, 0.25, 0.25,  //
                                             0.1, 0.4, 0.4, 0.1,      //
                                             0.05, 0.15, 0.3, 0.5},
                                            {3, 4});
  Tensor ids = Tensor::Empty({3, 2}, DType::kI32), vals = Tensor::Empty({3, 2}, DType::kF64);
  ops::TopK(probs, 2, ids, vals);
  EXPECT_EQ(IntsOf(ids), (std::vector<int>{0, 1, 1, 2, 3, 2}));
  EXPECT_EQ(vals.ToDoubles(), (std::vector<double>{0.25, 0.25, 0.4, 0.4, 0.5, 0.3}));
}

TEST(AssignSlots, FirstChoicesBeforeSecondThenTokenOrder) {
  // 4 tokens, 2 experts, capacity 2.
  //   choice rank 0: t0->e0 (slot 0), t1->e0 (slot 1), t2->e0 (full), t3->e1 (slot 0)
  //   choice rank 1: t0->e1 (slot 1), t1->e1 (full), t2->e1 (full), t3->e0 (full)
  Tensor ids = Tensor::FromVector<int32_t>({0, 1, 0, 1, 0, 1, 1, 0}, {4, 2});
  Tensor slot = Tensor::Empty({4, 2}, DType::kI32);
  Tensor routed = Tensor::Empty({2}, DType::kI32), kept = Tensor::Empty({2}, DType::kI32);
  ops::AssignSlots(ids, 2, 2, slot, routed, kept);
  EXPECT_EQ(IntsOf(slot), (std::vector<int>{0, 1, 1, -1, -1, -1, 0, -1}));
  EXPECT_EQ(IntsOf(routed), (std::vector<int>{4, 4}));
  EXPECT_EQ(IntsOf(kept), (std::vector<int>{2, 2}));
  // Dropless keeps everything in arrival order.
  ops::AssignSlots(ids, 2, -1, slot, routed, kept);
  EXPECT_EQ(IntsOf(slot), (std::vector<int>{0, 1, 1, 2, 2, 3, 0, 3}));
  EXPECT_EQ(IntsOf(kept), (std::vector<int>{4, 4}));
}

TEST(PermutationIndices, RowsGroupedByExpertInSlotOrder) {
  Tensor ids = Tensor::FromVector<int32_t>({0, 1, 0, 1, 0, 1, 1, 0}, {4, 2});
  Tensor slot = Tensor::FromVector<int32_t>({0, 1, 1, -1, -1, -1, 0, -1}, {4, 2});
  Tensor kept = Tensor::FromVector<int32_t>({2, 2}, {2});
  Tensor tok = Tensor::Empty({4}, DType::kI32), choice = Tensor::Empty({4}, DType::kI32);
  ops::PermutationIndices(ids, slot, kept, tok, choice);
  EXPECT_EQ(IntsOf(tok), (std::vector<int>{0, 1, 3, 0}));     // e0: t0, t1; e1: t3, t0
  EXPECT_EQ(IntsOf(choice), (std::vector<int>{0, 2, 6, 1}));  // t * k + r
}

TEST(Gates, RawAndRenormalised) {
  Tensor p = Tensor::FromVector<double>({0.5, 0.3, 0.2, 0.2}, {2, 2});
  Tensor g = Tensor::Empty({2, 2}, DType::kF64);
  ops::RouterGates(p, false, g);
  EXPECT_EQ(g.ToDoubles(), p.ToDoubles());
  ops::RouterGates(p, true, g);
  EXPECT_NEAR(g.ToDoubles()[0], 0.5 / 0.8, 1e-15);
  EXPECT_NEAR(g.ToDoubles()[1], 0.3 / 0.8, 1e-15);
  EXPECT_NEAR(g.ToDoubles()[2], 0.5, 1e-15);
}

TEST(RouterLosses, LoadBalancingAndZLossValues) {
  // Balanced top-1 routing: f = [1/2, 1/2], P = [0.55, 0.45] -> 2 * 0.5 = 1.
  Tensor p = Tensor::FromVector<double>({0.7, 0.3, 0.4, 0.6}, {2, 2});
  Tensor routed = Tensor::FromVector<int32_t>({1, 1}, {2});
  EXPECT_NEAR(ops::LoadBalancingLoss(p, routed, 1), 1.0, 1e-15);
  // Collapsed: both tokens to e0: f = [1, 0], P = [0.65, 0.35] -> 2 * 0.65.
  Tensor p2 = Tensor::FromVector<double>({0.7, 0.3, 0.6, 0.4}, {2, 2});
  Tensor routed2 = Tensor::FromVector<int32_t>({2, 0}, {2});
  EXPECT_NEAR(ops::LoadBalancingLoss(p2, routed2, 1), 1.3, 1e-15);
  // Top-2 over 2 experts: every expert gets half of the T*k choices -> balanced = 1.
  Tensor routed3 = Tensor::FromVector<int32_t>({2, 2}, {2});
  EXPECT_NEAR(ops::LoadBalancingLoss(p2, routed3, 2), 1.0, 1e-15);
  // z-loss of zero logits over 2 experts: (log 2)^2.
  Tensor lse = Tensor::FromVector<double>({std::log(2.0), std::log(2.0)}, {2});
  Tensor half = Tensor::FromVector<double>({0.5, 0.5, 0.5, 0.5}, {2, 2});
  EXPECT_NEAR(ops::RouterZLoss(lse), std::log(2.0) * std::log(2.0), 1e-15);
  EXPECT_NEAR(ops::MeanEntropy(half), std::log(2.0), 1e-15);
  // The gradients: dL_aux/dP[t, e] = E f_e / T, dL_z/dlogits = 2 lse_t p / T.
  Tensor dp = Tensor::Zeros({2, 2}, DType::kF64);
  ops::LoadBalancingLossBackward(routed2, 1, 0.5, dp);
  EXPECT_EQ(dp.ToDoubles(), (std::vector<double>{0.5 * 2 * 1.0 / 2, 0.0, 0.5 * 2 * 1.0 / 2, 0.0}));
  Tensor dl = Tensor::Zeros({2, 2}, DType::kF64);
  ops::RouterZLossBackward(lse, half, 0.5, dl);
  for (double v : dl.ToDoubles()) EXPECT_NEAR(v, 0.5 * 2 * std::log(2.0) * 0.5 / 2, 1e-15);
  // The summary holds the same values and the counts, in one tensor.
  Tensor summary = Tensor::Empty({7}, DType::kF64);
  Tensor kept = Tensor::FromVector<int32_t>({1, 0}, {2});
  ops::RouterSummary(p2, lse, routed2, kept, 1, summary);
  EXPECT_EQ(summary.ToDoubles(),
            (std::vector<double>{ops::LoadBalancingLoss(p2, routed2, 1), ops::RouterZLoss(lse),
                                 ops::MeanEntropy(p2), 2, 0, 1, 0}));
}

TEST(Router, StatsCountDropsAndCapacity) {
  RouterOptions o;
  o.num_experts = 2;
  o.top_k = 1;
  o.capacity_factor_train = 0.5;  // C = max(1, ceil(0.5 * 1 * 4 / 2)) = 1
  o.min_capacity = 1;
  Router router("r.", 2, o, DType::kF64, Device::kCpu);
  // Router weight e0 = [1, 0], e1 = [0, 1]: token t goes to argmax of x_t.
  // Parameters start uninitialised (Tensor::Empty): set all four entries.
  router.weight.value = Tensor::FromVector<double>({1, 0, 0, 1}, {2, 2});
  Tensor x = Tensor::FromVector<double>({2, 0, 3, 0, 0, 1, 5, 0}, {4, 2});
  const Routing& r = router.Forward(x, StepContext{}, 0);
  EXPECT_EQ(r.capacity, 1);
  EXPECT_EQ(IntsOf(r.expert_ids), (std::vector<int>{0, 0, 1, 0}));
  EXPECT_EQ(IntsOf(r.slots), (std::vector<int>{0, -1, 0, -1}));
  EXPECT_EQ(router.stats().routed, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(router.stats().kept, (std::vector<int64_t>{1, 1}));
  EXPECT_DOUBLE_EQ(router.stats().dropped_fraction, 0.5);
  // Evaluation uses capacity_factor_eval (2.0 -> C = 4): nothing dropped.
  StepContext eval;
  eval.training = false;
  router.Forward(x, eval, 0);
  EXPECT_EQ(router.stats().dropped_fraction, 0.0);
}

}  // namespace
}  // namespace sb
