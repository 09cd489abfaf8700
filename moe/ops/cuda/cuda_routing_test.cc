// CUDA routing and row permutations against the CPU reference: jitter and
// the integer routing decisions (top-k with ties, capacity assignment in
// priority order over several scan tiles, permutation) must match exactly;
// gates, router-loss gradients and statistics to f32 rounding; the
// scatter-add deterministically. Skips without a GPU.
#include <cmath>
#include <vector>

#include "moe/core/rng.h"
#include "moe/ops/cuda/cuda_test_util.h"

namespace sb {
namespace {

using cuda_test::BitwiseEqual;
using cuda_test::R;
using cuda_test::RoundedBf16;
using cuda_test::Tol;
using cuda_test::ToCpu;
using cuda_test::ToGpu;

class CudaRouting : public cuda_test::CudaTest {};

TEST_F(CudaRouting, JitterDrawsTheCpuBits) {
  Tensor x = R({40, 30}, 1);
  Tensor n = Tensor::Empty(x.shape(), DType::kF32), o = Tensor::Empty(x.shape(), DType::kF32);
  ops::RouterJitter(x, 0.01, 12345, n, o);
  Tensor ng = Tensor::Empty(x.shape(), DType::kF32, Device::kCuda), og = Tensor::Empty(x.shape(), DType::kF32, Device::kCuda);
  ops::RouterJitter(ToGpu(x), 0.01, 12345, ng, og);
  EXPECT_TRUE(BitwiseEqual(ng, ToGpu(n)));
  EXPECT_TRUE(BitwiseEqual(og, ToGpu(o)));
}

// Probabilities with ties (several experts at the row maximum) and a random
// part: the chosen ids must be the CPU's, ties to the lower id.
Tensor TiedProbs(int64_t T, int64_t E) {
  Tensor p = Tensor::Empty({T, E}, DType::kF32);
  float* v = p.data<float>();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e)
      v[t * E + e] = t % 3 == 0 ? (e % 4 == 1 ? 0.2f : 0.05f)
                                : static_cast<float>(UniformAt(StreamKey({static_cast<uint64_t>(t), 9}), static_cast<uint64_t>(e)));
  return p;
}

TEST_F(CudaRouting, TopKGatesAndGradientsMatchCpu) {
  const int64_t T = 300, E = 8;
  for (int k : {1, 2, 3}) {
    const Tensor p = TiedProbs(T, E);
    Tensor ids = Tensor::Empty({T, k}, DType::kI32), top = Tensor::Empty({T, k}, DType::kF32);
    ops::TopK(p, k, ids, top);
    Tensor idg = Tensor::Empty({T, k}, DType::kI32, Device::kCuda), topg = Tensor::Empty({T, k}, DType::kF32, Device::kCuda);
    ops::TopK(ToGpu(p), k, idg, topg);
    EXPECT_TRUE(BitwiseEqual(idg, ToGpu(ids))) << "k = " << k;
    EXPECT_TRUE(BitwiseEqual(topg, ToGpu(top)));
    for (bool normalize : {false, true}) {
      Tensor g = Tensor::Empty({T, k}, DType::kF32), gg = Tensor::Empty({T, k}, DType::kF32, Device::kCuda);
      ops::RouterGates(top, normalize, g);
      ops::RouterGates(topg, normalize, gg);
      SB_EXPECT_TENSOR_NEAR(ToCpu(gg), g, Tol(DType::kF32, 1.0, k));
      const Tensor dg = R({T, k}, 2);
      Tensor dp = Tensor::Empty({T, k}, DType::kF32), dpg = Tensor::Empty({T, k}, DType::kF32, Device::kCuda);
      ops::RouterGatesBackward(top, g, dg, normalize, dp);
      ops::RouterGatesBackward(topg, gg, ToGpu(dg), normalize, dpg);
      SB_EXPECT_TENSOR_NEAR(ToCpu(dpg), dp, Tol(DType::kF32, 64.0, k));
    }
    Tensor dprobs = Tensor::Zeros({T, E}, DType::kF32), dpg = Tensor::Zeros({T, E}, DType::kF32, Device::kCuda);
    ops::ScatterTopK(ids, top, dprobs);
    ops::ScatterTopK(idg, topg, dpg);
    EXPECT_TRUE(BitwiseEqual(dpg, ToGpu(dprobs)));
  }
}

// 1500 tokens x top-2 over 8 experts: the scan crosses tiles of 512 choices.
TEST_F(CudaRouting, CapacityAssignmentAndPermutationMatchCpuExactly) {
  const int64_t T = 1500, E = 8;
  const int k = 2;
  const Tensor p = TiedProbs(T, E);
  Tensor ids = Tensor::Empty({T, k}, DType::kI32), top = Tensor::Empty({T, k}, DType::kF32);
  ops::TopK(p, k, ids, top);
  for (int64_t capacity : {int64_t{-1}, int64_t{300}, int64_t{1}}) {
    Tensor slot = Tensor::Empty({T, k}, DType::kI32), routed = Tensor::Empty({E}, DType::kI32);
    Tensor kept = Tensor::Empty({E}, DType::kI32);
    ops::AssignSlots(ids, static_cast<int>(E), capacity, slot, routed, kept);
    const Tensor idg = ToGpu(ids);
    Tensor sg = Tensor::Empty({T, k}, DType::kI32, Device::kCuda), rg = Tensor::Empty({E}, DType::kI32, Device::kCuda);
    Tensor kg = Tensor::Empty({E}, DType::kI32, Device::kCuda);
    ops::AssignSlots(idg, static_cast<int>(E), capacity, sg, rg, kg);
    EXPECT_TRUE(BitwiseEqual(sg, ToGpu(slot))) << "capacity " << capacity;
    EXPECT_TRUE(BitwiseEqual(rg, ToGpu(routed)));
    EXPECT_TRUE(BitwiseEqual(kg, ToGpu(kept)));
    int64_t n = 0;
    for (double c : kept.ToDoubles()) n += static_cast<int64_t>(c);
    Tensor tok = Tensor::Empty({n}, DType::kI32), choice = Tensor::Empty({n}, DType::kI32);
    ops::PermutationIndices(ids, slot, kept, tok, choice);
    Tensor tg = Tensor::Empty({n}, DType::kI32, Device::kCuda), cg = Tensor::Empty({n}, DType::kI32, Device::kCuda);
    ops::PermutationIndices(idg, sg, kg, tg, cg);
    EXPECT_TRUE(BitwiseEqual(tg, ToGpu(tok)));
    EXPECT_TRUE(BitwiseEqual(cg, ToGpu(choice)));
  }
}

TEST_F(CudaRouting, RouterLossesAndSummaryMatchCpu) {
  const int64_t T = 700, E = 16;
  const int k = 2;
  Tensor logits = R({T, E}, 3, 2.0);
  Tensor p = Tensor::Empty({T, E}, DType::kF32), lse = Tensor::Empty({T}, DType::kF32);
  ops::SoftmaxForward(logits, p, lse);
  Tensor ids = Tensor::Empty({T, k}, DType::kI32), top = Tensor::Empty({T, k}, DType::kF32);
  ops::TopK(p, k, ids, top);
  Tensor slot = Tensor::Empty({T, k}, DType::kI32), routed = Tensor::Empty({E}, DType::kI32);
  Tensor kept = Tensor::Empty({E}, DType::kI32);
  ops::AssignSlots(ids, static_cast<int>(E), 100, slot, routed, kept);
  const Tensor pg = ToGpu(p), lg = ToGpu(lse), rg = ToGpu(routed), kg = ToGpu(kept);
  EXPECT_NEAR(ops::LoadBalancingLoss(pg, rg, k), ops::LoadBalancingLoss(p, routed, k), 1e-6);
  EXPECT_NEAR(ops::RouterZLoss(lg), ops::RouterZLoss(lse), 1e-6 * ops::RouterZLoss(lse));
  EXPECT_NEAR(ops::MeanEntropy(pg), ops::MeanEntropy(p), 1e-6);
  Tensor summary = Tensor::Empty({3 + 2 * E}, DType::kF64), sg = Tensor::Empty({3 + 2 * E}, DType::kF64, Device::kCuda);
  ops::RouterSummary(p, lse, routed, kept, k, summary);
  ops::RouterSummary(pg, lg, rg, kg, k, sg);
  SB_EXPECT_TENSOR_NEAR(ToCpu(sg), summary, 1e-5);
  Tensor d = R({T, E}, 4), dg = ToGpu(d);
  ops::LoadBalancingLossBackward(routed, k, 0.3, d);
  ops::LoadBalancingLossBackward(rg, k, 0.3, dg);
  EXPECT_TRUE(BitwiseEqual(dg, ToGpu(d))) << "the same f64 constants, rounded once";
  Tensor z = R({T, E}, 5), zg = ToGpu(z);
  ops::RouterZLossBackward(lse, p, 0.3, z);
  ops::RouterZLossBackward(lg, pg, 0.3, zg);
  SB_EXPECT_TENSOR_NEAR(ToCpu(zg), z, Tol(DType::kF32, 4.0));
}

TEST_F(CudaRouting, PaddedRowIndexMatchesCpu) {
  const std::vector<int64_t> rows = {5, 0, 17, 3, 0, 9};
  Tensor index = Tensor::Empty({34}, DType::kI32), ig = Tensor::Empty({34}, DType::kI32, Device::kCuda);
  ops::PaddedRowIndex(rows, 20, index);
  ops::PaddedRowIndex(rows, 20, ig);
  EXPECT_TRUE(BitwiseEqual(ig, ToGpu(index)));
}

TEST_F(CudaRouting, RowGatherScatterAndDotMatchCpuDeterministically) {
  const int64_t N = 60, M = 500, D = 40;
  std::vector<int32_t> index(M);
  for (int64_t m = 0; m < M; ++m) index[m] = static_cast<int32_t>((m * 31 + m / 7) % N);
  const Tensor ic = Tensor::FromVector(index, {M});
  Tensor src = R({N, D}, 6), rows = R({M, D}, 7), scale = R({M, 1}, 8);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const Tensor sr = dt == DType::kBF16 ? RoundedBf16(src) : src;
    const Tensor rr = dt == DType::kBF16 ? RoundedBf16(rows) : rows;
    // Gather with an f32 scale (the router's gates) on dt rows.
    Tensor gathered = Tensor::Empty({M, D}, DType::kF32);
    ops::GatherRows(sr, ic, gathered, &scale);
    Tensor gg = Tensor::Empty({M, D}, dt, Device::kCuda);
    const Tensor scale_g = ToGpu(scale);
    ops::GatherRows(ToGpu(src, dt), ToGpu(ic), gg, &scale_g);
    SB_EXPECT_TENSOR_NEAR(ToCpu(gg), gathered, Tol(dt, 8.0));
    // Scatter-add with repeated destinations, twice: the same bits.
    Tensor acc = Tensor::Empty({N, D}, DType::kF32);
    ops::Copy(src, acc);
    ops::ScatterAddRows(rr, ic, acc, &scale);
    Tensor a1 = ToGpu(src, dt), a2 = ToGpu(src, dt);
    ops::ScatterAddRows(ToGpu(rows, dt), ToGpu(ic), a1, &scale_g);
    ops::ScatterAddRows(ToGpu(rows, dt), ToGpu(ic), a2, &scale_g);
    SB_EXPECT_TENSOR_NEAR(ToCpu(a1), acc, Tol(dt, 16.0, M / N + 1));
    EXPECT_TRUE(BitwiseEqual(a1, a2));
    // Row dots into f32 (the gate gradients).
    Tensor dots = Tensor::Empty({M, 1}, DType::kF32);
    ops::GatherRowDot(sr, ic, rr, dots);
    Tensor dg = Tensor::Empty({M, 1}, DType::kF32, Device::kCuda);
    ops::GatherRowDot(ToGpu(src, dt), ToGpu(ic), ToGpu(rows, dt), dg);
    SB_EXPECT_TENSOR_NEAR(ToCpu(dg), dots, Tol(DType::kF32, 8.0, D));
  }
}

}  // namespace
}  // namespace sb
