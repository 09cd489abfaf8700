// CPU ops against naive loops written from the definitions in ops.h.
#include "moe/ops/ops.h"

#include <algorithm>

#include <cmath>

#include "gtest/gtest.h"
#include "moe/ops/cpu/fast_math.h"
#include "tests/testing/grad_check.h"

namespace sb {
namespace {

using testing::RandomTensor;

double At(const Tensor& t, int64_t i) { return t.ToDoubles()[i]; }

TEST(Gemm, AllTransposesMatchNaive) {
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      const int64_t m = 5, k = 7, n = 3;
      Tensor a = RandomTensor(ta ? Shape{k, m} : Shape{m, k}, 1);
      Tensor b = RandomTensor(tb ? Shape{n, k} : Shape{k, n}, 2);
      Tensor c = RandomTensor({m, n}, 3);
      Tensor expect = Tensor::Empty({m, n}, DType::kF64);
      const double* pa = a.data<double>();
      const double* pb = b.data<double>();
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < k; ++p)
            s += (ta ? pa[p * m + i] : pa[i * k + p]) * (tb ? pb[j * k + p] : pb[p * n + j]);
          expect.data<double>()[i * n + j] = 2.0 * s + 0.5 * c.data<double>()[i * n + j];
        }
      ops::Gemm(a, ta, b, tb, c, 2.0, 0.5);
      SB_EXPECT_TENSOR_NEAR(c, expect, 1e-12);
    }
  }
}

TEST(Gemm, EmptyInnerDimensionGivesZero) {
  Tensor a = Tensor::Zeros({3, 0}, DType::kF64), b = Tensor::Zeros({0, 2}, DType::kF64);
  Tensor c = RandomTensor({3, 2}, 4);
  ops::Gemm(a, false, b, false, c);
  for (double v : c.ToDoubles()) EXPECT_EQ(v, 0.0);
}

TEST(Softmax, RowsSumToOneAndLseMatches) {
  Tensor x = RandomTensor({4, 6}, 5, 3.0);
  Tensor p = Tensor::Empty({4, 6}, DType::kF64), lse = Tensor::Empty({4}, DType::kF64);
  ops::SoftmaxForward(x, p, lse);
  for (int t = 0; t < 4; ++t) {
    double s = 0, direct = 0;
    for (int j = 0; j < 6; ++j) {
      s += At(p, t * 6 + j);
      direct += std::exp(At(x, t * 6 + j));
    }
    EXPECT_NEAR(s, 1.0, 1e-14);
    EXPECT_NEAR(At(lse, t), std::log(direct), 1e-12);
  }
}

// The fused LM head + cross-entropy against log-softmax of the full logits
// in f64, for chunk sizes that split the tokens evenly, unevenly, and not at
// all; the gradient against the definition (softmax - onehot).
TEST(LmHeadCrossEntropy, MatchesFullLogitsForEveryChunking) {
  const int64_t T = 5, D = 4, V = 7;
  Tensor hidden = RandomTensor({T, D}, 6), head = RandomTensor({V, D}, 16);
  Tensor targets = Tensor::FromVector<int32_t>({4, -1, 0, 6, 2}, {T});
  Tensor logits = Tensor::Empty({T, V}, DType::kF64);
  ops::Gemm(hidden, false, head, true, logits);
  const std::vector<double> x = logits.ToDoubles(), h = hidden.ToDoubles(), w = head.ToDoubles();
  const std::vector<int32_t> y = {4, -1, 0, 6, 2};
  const double scale = 0.25;
  std::vector<double> loss(T), dlogit(T * V, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double z = 0;
    for (int64_t j = 0; j < V; ++j) z += std::exp(x[t * V + j]);
    loss[t] = y[t] < 0 ? 0.0 : std::log(z) - x[t * V + y[t]];
    for (int64_t j = 0; j < V && y[t] >= 0; ++j)
      dlogit[t * V + j] = scale * (std::exp(x[t * V + j]) / z - (j == y[t] ? 1.0 : 0.0));
  }
  for (int64_t chunk : {1, 2, 5, 64}) {
    Tensor losses = Tensor::Empty({T}, DType::kF64), dh = Tensor::Empty({T, D}, DType::kF64);
    Tensor dw = Tensor::Zeros({V, D}, DType::kF64);
    ops::LmHeadCrossEntropy(hidden, head, targets, chunk, scale, losses, dh, dw);
    for (int64_t t = 0; t < T; ++t) EXPECT_NEAR(At(losses, t), loss[t], 1e-12) << "chunk " << chunk;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) {
        double e = 0;
        for (int64_t j = 0; j < V; ++j) e += dlogit[t * V + j] * w[j * D + d];
        EXPECT_NEAR(At(dh, t * D + d), e, 1e-12) << "dhidden chunk " << chunk;
      }
    for (int64_t j = 0; j < V; ++j)
      for (int64_t d = 0; d < D; ++d) {
        double e = 0;
        for (int64_t t = 0; t < T; ++t) e += dlogit[t * V + j] * h[t * D + d];
        EXPECT_NEAR(At(dw, j * D + d), e, 1e-12) << "dhead chunk " << chunk;
      }
    // Without gradient outputs: the same losses.
    Tensor only = Tensor::Empty({T}, DType::kF64);
    ops::LmHeadCrossEntropy(hidden, head, targets, chunk, 0.0, only, Tensor(), Tensor());
    EXPECT_EQ(only.ToDoubles(), losses.ToDoubles());
  }
}

TEST(Rope, MatchesRotateHalfDefinition) {
  const int S = 4, hd = 6, heads = 2;
  Tensor x = RandomTensor({2 * S, heads * hd}, 7);
  const std::vector<double> before = x.ToDoubles();
  Tensor c = Tensor::Empty({S, hd / 2}, DType::kF64), s = Tensor::Empty({S, hd / 2}, DType::kF64);
  ops::RopeTables(S, hd, 500.0, c, s);
  ops::Rope(x, c, s, S, false);
  for (int t = 0; t < 2 * S; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < hd; ++i) {
        // HF: q * cos(emb) + rotate_half(q) * sin(emb), emb = cat(freqs, freqs)
        const int fi = i % (hd / 2);
        const double angle = (t % S) * std::pow(500.0, -2.0 * fi / hd);
        const double* v = before.data() + t * heads * hd + h * hd;
        const double rot = i < hd / 2 ? -v[i + hd / 2] : v[i - hd / 2];
        EXPECT_NEAR(At(x, t * heads * hd + h * hd + i), v[i] * std::cos(angle) + rot * std::sin(angle), 1e-12);
      }
    }
  }
  ops::Rope(x, c, s, S, true);  // the inverse rotation restores the input
  for (size_t i = 0; i < before.size(); ++i) EXPECT_NEAR(At(x, i), before[i], 1e-12);
}

TEST(Attention, MatchesNaiveCausalGqa) {
  const int B = 2, S = 5, H = 4, Hkv = 2, hd = 3;
  Tensor q = RandomTensor({B * S, H * hd}, 8), k = RandomTensor({B * S, Hkv * hd}, 9);
  Tensor v = RandomTensor({B * S, Hkv * hd}, 10);
  Tensor lse = Tensor::Empty({B, H, S}, DType::kF64), out = Tensor::Empty({B * S, H * hd}, DType::kF64);
  ops::CausalAttentionForward(q, k, v, S, lse, out);
  const std::vector<double> Q = q.ToDoubles(), K = k.ToDoubles(), V = v.ToDoubles();
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < S; ++i) {
        const int g = h / (H / Hkv);
        std::vector<double> w(S, 0.0);
        double z = 0;
        for (int j = 0; j <= i; ++j) {
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += Q[(b * S + i) * H * hd + h * hd + d] * K[(b * S + j) * Hkv * hd + g * hd + d];
          w[j] = std::exp(dot / std::sqrt(hd));
          z += w[j];
        }
        for (int d = 0; d < hd; ++d) {
          double o = 0;
          for (int j = 0; j <= i; ++j) o += w[j] / z * V[(b * S + j) * Hkv * hd + g * hd + d];
          EXPECT_NEAR(At(out, (b * S + i) * H * hd + h * hd + d), o, 1e-12);
        }
        EXPECT_NEAR(At(lse, (b * H + h) * S + i), std::log(z), 1e-12);
      }
}

// Sequences longer than one query block (64 rows): the blocked forward and
// the backward's recomputation from lse across block boundaries, against
// finite differences of L = sum(out * R).
TEST(Attention, GradientsMatchFiniteDifferencesAcrossQueryBlocks) {
  const int B = 1, S = 70, H = 2, Hkv = 1, hd = 2;
  Tensor q = RandomTensor({B * S, H * hd}, 21), k = RandomTensor({B * S, Hkv * hd}, 22);
  Tensor v = RandomTensor({B * S, Hkv * hd}, 23), r = RandomTensor({B * S, H * hd}, 24);
  Tensor lse = Tensor::Empty({B, H, S}, DType::kF64), out = Tensor::Empty({B * S, H * hd}, DType::kF64);
  auto loss = [&] {
    ops::CausalAttentionForward(q, k, v, S, lse, out);
    return testing::DotAll(out, r);
  };
  loss();
  Tensor dq = Tensor::Empty(q.shape(), DType::kF64), dk = Tensor::Empty(k.shape(), DType::kF64);
  Tensor dv = Tensor::Empty(v.shape(), DType::kF64);
  ops::CausalAttentionBackward(q, k, v, out, lse, r, S, dq, dk, dv);
  testing::ExpectGradientMatches("dq", q, dq, loss);
  testing::ExpectGradientMatches("dk", k, dk, loss);
  testing::ExpectGradientMatches("dv", v, dv, loss);
}

TEST(GroupedGemm, EqualsOneGemmPerGroup) {
  // Groups of 3, 0 and 2 rows: forward (rows x stack^T), the weight
  // gradient (rows^T x rows into a stack, += with an empty group) and the
  // data gradient (rows x stack).
  const std::vector<int64_t> rows = {3, 0, 2};
  const int64_t G = 3, N = 5, D = 4, F = 6;
  Tensor x = RandomTensor({N, D}, 31), w = RandomTensor({G, F, D}, 32), dy = RandomTensor({N, F}, 33);
  Tensor y = Tensor::Empty({N, F}, DType::kF64);
  ops::GroupedGemm(x, false, w, true, y, rows);
  Tensor dw = RandomTensor({G, F, D}, 34);
  const std::vector<double> dw0 = dw.ToDoubles();
  ops::GroupedGemm(dy, true, x, false, dw, rows, 1.0, 1.0);
  Tensor dx = Tensor::Empty({N, D}, DType::kF64);
  ops::GroupedGemm(dy, false, w, false, dx, rows, 2.0);
  int64_t begin = 0;
  for (int64_t g = 0; g < G; ++g) {
    const Tensor wg = w.Rows(g, g + 1).Reshape({F, D});
    Tensor dwg = Tensor::Empty({F, D}, DType::kF64);
    ops::Copy(Tensor::FromVector(std::vector<double>(dw0.begin() + g * F * D, dw0.begin() + (g + 1) * F * D), {F, D}), dwg);
    if (rows[g] > 0) {
      const Tensor xg = x.Rows(begin, begin + rows[g]), dyg = dy.Rows(begin, begin + rows[g]);
      Tensor yg = Tensor::Empty({rows[g], F}, DType::kF64), dxg = Tensor::Empty({rows[g], D}, DType::kF64);
      ops::Gemm(xg, false, wg, true, yg);
      ops::Gemm(dyg, true, xg, false, dwg, 1.0, 1.0);
      ops::Gemm(dyg, false, wg, false, dxg, 2.0);
      SB_EXPECT_TENSOR_NEAR(y.Rows(begin, begin + rows[g]), yg, 1e-12);
      SB_EXPECT_TENSOR_NEAR(dx.Rows(begin, begin + rows[g]), dxg, 1e-12);
    }
    SB_EXPECT_TENSOR_NEAR(dw.Rows(g, g + 1), dwg, 1e-12);  // unchanged for the empty group
    begin += rows[g];
  }
}

TEST(RowOps, PaddedRowIndexPlacesEachGroupAtItsPad) {
  Tensor index = Tensor::Empty({6}, DType::kI32);
  ops::PaddedRowIndex({2, 0, 3, 1}, 4, index);
  EXPECT_EQ(index.ToDoubles(), (std::vector<double>{0, 1, 8, 9, 10, 12}));
}

TEST(RowOps, GatherScatterAreTransposes) {
  // <Gather(src), y> == <src, ScatterAdd(y)> for any y: the two are adjoint.
  Tensor src = RandomTensor({4, 3}, 11), y = RandomTensor({5, 3}, 12), w = RandomTensor({5, 1}, 13);
  Tensor index = Tensor::FromVector<int32_t>({2, 0, 2, 3, 1}, {5});
  Tensor gathered = Tensor::Empty({5, 3}, DType::kF64), scattered = Tensor::Zeros({4, 3}, DType::kF64);
  ops::GatherRows(src, index, gathered, &w);
  ops::ScatterAddRows(y, index, scattered, &w);
  EXPECT_NEAR(testing::DotAll(gathered, y), testing::DotAll(src, scattered), 1e-12);
  Tensor dots = Tensor::Empty({5, 1}, DType::kF64);
  ops::GatherRowDot(src, index, y, dots);
  double expect = 0;
  for (int j = 0; j < 3; ++j) expect += At(src, 2 * 3 + j) * At(y, j);
  EXPECT_NEAR(At(dots, 0), expect, 1e-12);
}

TEST(Swiglu, MatchesDefinition) {
  Tensor g = RandomTensor({2, 3}, 14), u = RandomTensor({2, 3}, 15), o = Tensor::Empty({2, 3}, DType::kF64);
  ops::SwigluForward(g, u, o);
  for (int i = 0; i < 6; ++i) {
    const double x = At(g, i);
    EXPECT_NEAR(At(o, i), x / (1 + std::exp(-x)) * At(u, i), 1e-14);
  }
}

TEST(FastExp, MatchesExpWithinFewUlp) {
  double worst = 0;
  for (float x = -87.0f; x < 88.0f; x += 0.01371f) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(ops::FastExp(x) - exact) / exact);
  }
  EXPECT_LT(worst, 4 * 1.2e-7) << "relative error";
  EXPECT_LT(ops::FastExp(-200.0f), 1e-37f);
}

TEST(Convert, Bf16RoundsToNearestEven) {
  Tensor f = Tensor::FromVector<float>({1.0f, 1.00390625f, 1.01171875f, -3.5f}, {4});
  Tensor b = Tensor::Empty({4}, DType::kBF16), back = Tensor::Empty({4}, DType::kF32);
  ops::Convert(f, b);
  ops::Convert(b, back);
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even (1).
  EXPECT_EQ(At(back, 0), 1.0);
  EXPECT_EQ(At(back, 1), 1.0);
  EXPECT_EQ(At(back, 2), 1.015625);
  EXPECT_EQ(At(back, 3), -3.5);
}

}  // namespace
}  // namespace sb
