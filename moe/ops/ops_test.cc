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

TEST(CrossEntropy, LossAndGradientMatchDefinition) {
  Tensor logits = RandomTensor({3, 5}, 6);
  Tensor targets = Tensor::FromVector<int32_t>({4, -1, 0}, {3});
  Tensor losses = Tensor::Empty({3}, DType::kF64), grad = Tensor::Empty({3, 5}, DType::kF64);
  Tensor lse = Tensor::Empty({3}, DType::kF64);
  ops::CrossEntropyForward(logits, targets, losses, lse);
  ops::CrossEntropyBackward(logits, targets, lse, 0.5, grad);
  const std::vector<double> x = logits.ToDoubles();
  double lse0 = 0;
  for (int j = 0; j < 5; ++j) lse0 += std::exp(x[j]);
  lse0 = std::log(lse0);
  EXPECT_NEAR(At(losses, 0), lse0 - x[4], 1e-12);
  EXPECT_EQ(At(losses, 1), 0.0);  // ignored target
  EXPECT_NEAR(At(grad, 4), 0.5 * (std::exp(x[4] - lse0) - 1.0), 1e-12);
  EXPECT_NEAR(At(grad, 1), 0.5 * std::exp(x[1] - lse0), 1e-12);
  for (int j = 0; j < 5; ++j) EXPECT_EQ(At(grad, 5 + j), 0.0);
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
  Tensor probs = Tensor::Empty({B, H, S, S}, DType::kF64), out = Tensor::Empty({B * S, H * hd}, DType::kF64);
  ops::CausalAttentionForward(q, k, v, S, probs, out);
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
      }
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
