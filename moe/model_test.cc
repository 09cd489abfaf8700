// Whole-model checks: finite-difference gradients of the total loss (CE +
// router losses) for every parameter, tied and untied heads, dense and MoE
// blocks; and the MoE layer against a naive per-token mixture.
#include "moe/model.h"

#include <algorithm>
#include <cmath>

#include "gtest/gtest.h"
#include "moe/layers/experts.h"
#include "moe/layers/dense_ffn.h"
#include "moe/ops/ops.h"
#include "tests/testing/grad_check.h"
#include "tests/testing/small_model.h"

namespace sb {
namespace {

ModelOptions SmallOptions(bool tie) {
  ModelOptions o = testing::SmallModelOptions(tie);
  o.init_std = 0.5;  // large weights: non-trivial gradients everywhere
  o.router.capacity_factor_train = 0.75;
  o.router.min_capacity = 1;
  o.router.aux_loss_coef = 0.1;
  o.router.z_loss_coef = 0.05;
  o.router.jitter_eps = 0.05;
  return o;
}

void CheckModel(const ModelOptions& o, const testing::GradCheckOptions& opt = {}) {
  Model model(o, nullptr, DType::kF64, Device::kCpu);
  model.InitWeights(3);
  const int B = 2, S = 5;
  std::vector<int32_t> in(B * S), tg(B * S);
  for (int i = 0; i < B * S; ++i) {
    in[i] = (i * 7 + 3) % o.vocab_size;
    tg[i] = i == 4 ? -1 : (i * 5 + 1) % o.vocab_size;  // one ignored target
  }
  Tensor inputs = Tensor::FromVector(in, {B, S}), targets = Tensor::FromVector(tg, {B, S});
  StepContext ctx;
  ctx.seed = 9;
  ctx.step = 4;
  const double scale = 0.5;
  auto loss = [&] { return scale * model.Forward(inputs, targets, ctx).total_loss; };
  model.ZeroGrad();
  const ForwardResult r = model.Forward(inputs, targets, ctx);
  EXPECT_EQ(r.tokens, B * S - 1);
  EXPECT_GT(r.dropped_fraction, 0.0);
  model.Backward(scale);
  for (Parameter* p : model.Parameters()) {
    Tensor analytic = Tensor::Empty(p->grad.shape(), DType::kF64);
    ops::Copy(p->grad, analytic);
    testing::ExpectGradientMatches(p->name, p->value, analytic, loss, opt);
  }
}

TEST(ModelGradCheck, UntiedHeadMixedDenseAndMoe) { CheckModel(SmallOptions(false)); }
TEST(ModelGradCheck, TiedHead) { CheckModel(SmallOptions(true)); }
TEST(ModelGradCheck, ActivationRecomputeAndSmallLmHeadChunks) {
  ModelOptions o = SmallOptions(false);
  o.activation_recompute = true;
  o.lm_head_chunk_tokens = 3;
  CheckModel(o);
}

// Recomputing activations in backward and chunking the LM head change no
// bit of the losses or gradients (two steps: the arenas are reused).
TEST(Model, RecomputeAndChunkingAreBitwiseInvisible) {
  auto run = [](bool recompute, int64_t chunk) {
    ModelOptions o = SmallOptions(false);
    o.activation_recompute = recompute;
    o.lm_head_chunk_tokens = chunk;
    Model model(o, nullptr, DType::kF32, Device::kCpu);
    model.InitWeights(5);
    std::vector<int32_t> in(12), tg(12);
    for (int i = 0; i < 12; ++i) {
      in[i] = (i * 3 + 1) % o.vocab_size;
      tg[i] = (i * 5 + 2) % o.vocab_size;
    }
    std::vector<double> out;
    for (int step = 0; step < 2; ++step) {
      model.ZeroGrad();
      StepContext ctx;
      ctx.step = step;
      out.push_back(model.Forward(Tensor::FromVector(in, {2, 6}), Tensor::FromVector(tg, {2, 6}), ctx).total_loss);
      model.Backward(0.5);
      for (Parameter* p : model.Parameters())
        for (double g : p->grad.ToDoubles()) out.push_back(g);
    }
    return out;
  };
  const std::vector<double> plain = run(false, 0);
  EXPECT_EQ(run(true, 0), plain);
  // Chunks of 5 tokens change how the head's gradient is summed (per chunk
  // GEMMs), so only to rounding.
  const std::vector<double> chunked = run(false, 5);
  ASSERT_EQ(chunked.size(), plain.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_NEAR(chunked[i], plain[i], 1e-5 * (1 + std::abs(plain[i])));
}

// Routing variants through the whole model: expert choice with shared experts
// and expert dropout; noisy gating with the CV loss, GShard's random second
// expert and batch priority.
TEST(ModelGradCheck, ExpertChoiceSharedExpertsDropout) {
  ModelOptions o = SmallOptions(false);
  o.router.routing = RoutingMode::kExpertChoice;
  o.router.capacity_factor_train = 0.25;  // C = 2: 8 slots for 10 tokens
  o.router.num_shared_experts = 1;
  o.router.expert_dropout = 0.2;
  // Experts scaled by 1 / (1 - 0.2) on init_std 0.5 weights make the loss
  // sharper: at eps = 1e-5 the truncation error (eps^2 / 6 times the third
  // derivative) reaches the 1e-6 tolerance on a few elements; at 2e-6 it is
  // 25x smaller while rounding (1e-15 |L| / eps) stays ~3e-9.
  testing::GradCheckOptions opt;
  opt.eps = 2e-6;
  CheckModel(o, opt);
}

TEST(ModelGradCheck, NoisyCvLossRandomSecondExpertBatchPriority) {
  ModelOptions o = SmallOptions(true);
  o.router.noisy_gating = true;
  o.router.balance_loss = BalanceLoss::kCvImportanceLoad;
  o.router.random_second_expert = true;
  o.router.batch_prioritized = true;
  CheckModel(o);
}

TEST(Model, ParameterCountsAndNames) {
  ModelOptions o = SmallOptions(false);
  Model model(o, nullptr, DType::kF32, Device::kCpu);
  // embed + head 2*11*8; per block: 2 norms 16, attention 8*8 + 2*4*8 + 8*8 = 192;
  // dense FFN 3*12*8 = 288; MoE: router 4*8 + experts 4*3*6*8 = 608; final norm 8.
  EXPECT_EQ(model.NumParameters(), 176 + 3 * (16 + 192) + 288 + 2 * 608 + 8);
  bool found = false;
  for (Parameter* p : model.Parameters())
    found |= p->SliceName(3) == "model.layers.2.block_sparse_moe.experts.3.w2.weight";
  EXPECT_TRUE(found);
}

// The backward observer (gradient-sync overlap) reports every parameter
// once, in reverse Parameters() order, and only when its gradient is final:
// the value seen at the report equals the value after Backward.
void CheckBackwardObserver(bool tie) {
  Model model(SmallOptions(tie), nullptr, DType::kF64, Device::kCpu);
  model.InitWeights(3);
  Tensor inputs = Tensor::FromVector(std::vector<int32_t>{1, 4, 2, 7, 3, 0}, {1, 6});
  Tensor targets = Tensor::FromVector(std::vector<int32_t>{4, 2, 7, 3, 0, 5}, {1, 6});
  std::vector<Parameter*> reported;
  std::vector<std::vector<double>> at_report;
  model.set_backward_observer([&](const std::vector<Parameter*>& finished) {
    for (Parameter* p : finished) {
      reported.push_back(p);
      at_report.push_back(p->grad.ToDoubles());
    }
  });
  model.ZeroGrad();
  model.Forward(inputs, targets, StepContext());
  model.Backward(1.0);
  std::vector<Parameter*> expected = model.Parameters();
  std::reverse(expected.begin(), expected.end());
  ASSERT_EQ(reported, expected);
  for (size_t i = 0; i < reported.size(); ++i) {
    EXPECT_EQ(at_report[i], reported[i]->grad.ToDoubles()) << reported[i]->name << " changed";
  }
}

TEST(Model, BackwardObserverReportsFinalGradientsInReverseOrder) {
  CheckBackwardObserver(false);
  CheckBackwardObserver(true);
}

// The GPU's fixed-capacity layout (every expert's rows padded to a common
// count, for strided-batched GEMMs) computes exactly what the packed rows
// do: outputs, input gradients and weight gradients, empty experts too.
TEST(Experts, PaddedRowsEqualPackedRows) {
  const int64_t D = 6, F = 5;
  const std::vector<int64_t> rows = {3, 0, 4, 1};
  const int64_t n = 8;
  auto run = [&](int64_t pad) {
    Experts experts("e.", 4, 0, D, F, DType::kF64, Device::kCpu);
    for (Parameter* p : {&experts.w1, &experts.w3, &experts.w2}) {
      testing::FillRandom(p->value, HashName(p->name), 0.7);
      ops::Fill(p->grad, 0.0);
    }
    const Tensor x = testing::RandomTensor({n, D}, 31), dy = testing::RandomTensor({n, D}, 32);
    std::vector<double> out = experts.Forward(x, rows, pad).ToDoubles();
    const std::vector<double> dx = experts.Backward(dy).ToDoubles();
    out.insert(out.end(), dx.begin(), dx.end());
    for (Parameter* p : {&experts.w1, &experts.w3, &experts.w2})
      for (double g : p->grad.ToDoubles()) out.push_back(g);
    return out;
  };
  const std::vector<double> packed = run(0), padded = run(4);
  ASSERT_EQ(packed.size(), padded.size());
  for (size_t i = 0; i < packed.size(); ++i) EXPECT_NEAR(padded[i], packed[i], 1e-14) << i;
  EXPECT_EQ(run(3), packed);  // a bound below some expert's rows: not padded
}

// SwiGLU expert `e` of a [E, F, D] / [E, D, F] stack (or a plain MLP with
// e = 0) on token t of x [T, D], computed directly in f64: out [D].
std::vector<double> NaiveSwiglu(const std::vector<double>& X, int64_t t, int64_t D, int64_t F,
                                const std::vector<double>& W1, const std::vector<double>& W3,
                                const std::vector<double>& W2, int64_t e) {
  std::vector<double> h(F), out(D, 0.0);
  for (int64_t f = 0; f < F; ++f) {
    double a = 0, b = 0;
    for (int64_t d = 0; d < D; ++d) {
      a += W1[(e * F + f) * D + d] * X[t * D + d];
      b += W3[(e * F + f) * D + d] * X[t * D + d];
    }
    h[f] = a / (1 + std::exp(-a)) * b;
  }
  for (int64_t d = 0; d < D; ++d)
    for (int64_t f = 0; f < F; ++f) out[d] += W2[(e * D + d) * F + f] * h[f];
  return out;
}

// y_t = sum_r gate_tr * SwiGLU_{e_tr}(x_t), computed directly, equals the
// permute / dispatch / combine path when nothing is dropped.
TEST(MoeLayer, DroplessEqualsNaiveMixture) {
  RouterOptions o;
  o.num_experts = 5;
  o.top_k = 3;
  o.normalize_top_k = true;
  o.capacity_factor_train = 0.0;
  LocalDispatcher dispatcher;
  const int64_t D = 6, F = 4, T = 13;
  MoeLayer moe("m.", 0, D, F, o, &dispatcher, DType::kF64, Device::kCpu);
  for (Parameter* p : moe.Parameters()) testing::FillRandom(p->value, HashName(p->name), 0.8);
  Tensor x = testing::RandomTensor({T, D}, 21);
  Tensor y = moe.Forward(x, StepContext{});
  const Routing& routing = moe.router().Forward(x, StepContext{}, 0);
  const std::vector<double> X = x.ToDoubles(), G = routing.gates.ToDoubles();
  const std::vector<double> ids = routing.expert_ids.ToDoubles();
  const std::vector<double> W1 = moe.experts().w1.value.ToDoubles();
  const std::vector<double> W3 = moe.experts().w3.value.ToDoubles();
  const std::vector<double> W2 = moe.experts().w2.value.ToDoubles();
  Tensor naive = Tensor::Zeros({T, D}, DType::kF64);
  for (int64_t t = 0; t < T; ++t) {
    for (int r = 0; r < o.top_k; ++r) {
      const int e = static_cast<int>(ids[t * o.top_k + r]);
      const std::vector<double> out = NaiveSwiglu(X, t, D, F, W1, W3, W2, e);
      for (int64_t d = 0; d < D; ++d) naive.data<double>()[t * D + d] += G[t * o.top_k + r] * out[d];
    }
  }
  SB_EXPECT_TENSOR_NEAR(y, naive, 1e-12);
}

// Expert choice with shared experts: y_t = shared(x_t) + sum over the
// experts e that took t of probs[t, e] * SwiGLU_e(x_t), computed directly.
TEST(MoeLayer, ExpertChoiceWithSharedExpertEqualsNaiveMixture) {
  RouterOptions o;
  o.num_experts = 4;
  o.top_k = 2;
  o.routing = RoutingMode::kExpertChoice;
  o.capacity_factor_train = 0.5;  // C = ceil(0.5 * 2 * 13 / 4) = 4 of 13 tokens
  o.min_capacity = 1;
  o.num_shared_experts = 2;
  LocalDispatcher dispatcher;
  const int64_t D = 6, F = 4, T = 13, E = 4, C = 4;
  MoeLayer moe("m.", 0, D, F, o, &dispatcher, DType::kF64, Device::kCpu);
  for (Parameter* p : moe.Parameters()) testing::FillRandom(p->value, HashName(p->name), 0.8);
  Tensor x = testing::RandomTensor({T, D}, 22);
  Tensor y = moe.Forward(x, StepContext{});
  Tensor logits = Tensor::Empty({T, E}, DType::kF64), p = Tensor::Empty({T, E}, DType::kF64);
  ops::Gemm(x, false, moe.router().weight.value, true, logits);
  ops::SoftmaxForward(logits, p, Tensor::Empty({T}, DType::kF64));
  const std::vector<double> X = x.ToDoubles(), probs = p.ToDoubles();
  const DenseFfn& shared = *moe.shared_experts();
  Tensor naive = Tensor::Zeros({T, D}, DType::kF64);
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<double> out =
        NaiveSwiglu(X, t, D, 2 * F, shared.gate_proj.value.ToDoubles(),
                    shared.up_proj.value.ToDoubles(), shared.down_proj.value.ToDoubles(), 0);
    for (int64_t d = 0; d < D; ++d) naive.data<double>()[t * D + d] += out[d];
  }
  const std::vector<double> W1 = moe.experts().w1.value.ToDoubles();
  const std::vector<double> W3 = moe.experts().w3.value.ToDoubles();
  const std::vector<double> W2 = moe.experts().w2.value.ToDoubles();
  for (int64_t e = 0; e < E; ++e) {
    // The C tokens with the largest probs[:, e] (random data: no ties).
    std::vector<int64_t> order(T);
    for (int64_t t = 0; t < T; ++t) order[t] = t;
    std::sort(order.begin(), order.end(),
              [&](int64_t a, int64_t b) { return probs[a * E + e] > probs[b * E + e]; });
    for (int64_t r = 0; r < C; ++r) {
      const int64_t t = order[r];
      const std::vector<double> out = NaiveSwiglu(X, t, D, F, W1, W3, W2, e);
      for (int64_t d = 0; d < D; ++d) naive.data<double>()[t * D + d] += probs[t * E + e] * out[d];
    }
  }
  SB_EXPECT_TENSOR_NEAR(y, naive, 1e-12);
}

}  // namespace
}  // namespace sb
