// AdamW against (1) values worked out by hand for 2 two-element parameters
// over 3 steps and (2) a straightforward f64 re-implementation of
// torch.optim.AdamW's update (Loshchilov & Hutter 2019, Algorithm 2).
#include "optim/adamw.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "optim/test_util.h"

namespace sb {
namespace {

using optim_test::AllClose;
using optim_test::Eps;
using optim_test::Normal;
using optim_test::SetValues;

// Textbook AdamW in f64 on one flat parameter (its own code, not adamw.cc's):
// p = p (1 - lr wd); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
struct ReferenceAdamW {
  double b1, b2, eps, wd;
  std::vector<double> p, m, v;
  int t = 0;
  void Step(double lr, const std::vector<double>& g) {
    ++t;
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1.0 - lr * wd;
      m[i] = b1 * m[i] + (1.0 - b1) * g[i];
      v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
      const double m_hat = m[i] / (1.0 - std::pow(b1, t));
      const double v_hat = v[i] / (1.0 - std::pow(b2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

switchboard::OptimizerConfig Config(double b1, double b2, double eps, double wd) {
  switchboard::OptimizerConfig c;
  c.set_name(switchboard::OptimizerConfig::ADAMW);
  c.set_beta1(b1);
  c.set_beta2(b2);
  c.set_eps(eps);
  c.set_weight_decay(wd);
  return c;
}

// b1 = b2 = 1/2, eps = 1, lr = 0.1, wd = 0.5 (decay factor 1 - 0.05 = 0.95).
// Gradients over steps t = 1, 2, 3: x gets 1, -1, 2.5 and y gets twice that.
// The grads are chosen so that sqrt(v_hat) is rational:
//   m_t: x: 0.5, -0.25, 1.125; bias 1 - 2^-t = 1/2, 3/4, 7/8
//        -> m_hat = 1, -1/3, 9/7               (y: 2, -2/3, 18/7)
//   v_t: x: 0.5, 0.75, 3.5;    bias 1/2, 3/4, 7/8
//        -> v_hat = 1, 1, 4  -> sqrt 1, 1, 2   (y: 4, 4, 16 -> 2, 2, 4)
//   ratio m_hat / (sqrt(v_hat) + 1): x: 1/2, -1/6, 3/7;  y: 2/3, -2/9, 18/35
// Weight (decays), start (1, -2):
//   x: 0.95*1 - 0.1/2 = 0.9;  0.95*0.9 + 0.1/6 = 523/600;
//      0.95*523/600 - 0.3/7 = 65959/84000
//   y: -1.9 - 0.2/3 = -59/30;  0.95*(-59/30) + 0.2/9 = -3323/1800;
//      0.95*(-3323/1800) - 1.8/35 = -454919/252000
// Norm (no decay), start (1, -2):
//   x: 1 - 0.05 = 19/20;  + 1/60 = 29/30;  - 3/70 = 97/105
//   y: -2 - 1/15 = -31/15;  + 1/45 = -92/45;  - 9/175 = -3301/1575
TEST(AdamWTest, HandComputedThreeSteps) {
  Parameter w = MakeParameter("w", ParamKind::kWeight, {2}, DType::kF64, Device::kCpu);
  Parameter n = MakeParameter("n", ParamKind::kNorm, {2}, DType::kF64, Device::kCpu);
  SetValues(w.value, {1.0, -2.0});
  SetValues(n.value, {1.0, -2.0});
  AdamW opt(Config(0.5, 0.5, 1.0, 0.5), {&w, &n});
  const double grads[3] = {1.0, -1.0, 2.5};
  const std::vector<std::vector<double>> want_w = {
      {0.9, -59.0 / 30}, {523.0 / 600, -3323.0 / 1800}, {65959.0 / 84000, -454919.0 / 252000}};
  const std::vector<std::vector<double>> want_n = {
      {19.0 / 20, -31.0 / 15}, {29.0 / 30, -92.0 / 45}, {97.0 / 105, -3301.0 / 1575}};
  for (int t = 0; t < 3; ++t) {
    SetValues(w.grad, {grads[t], 2 * grads[t]});
    SetValues(n.grad, {grads[t], 2 * grads[t]});
    opt.Step(0.1);
    EXPECT_EQ(opt.step(), t + 1);
    // A few roundings of values of size ~2 per step.
    EXPECT_TRUE(AllClose(want_w[t], w.value.ToDoubles(), 16 * Eps(DType::kF64))) << "step " << t;
    EXPECT_TRUE(AllClose(want_n[t], n.value.ToDoubles(), 16 * Eps(DType::kF64))) << "step " << t;
  }
}

// Several kinds and shapes (one large enough for the OpenMP path), random
// gradients, a changing lr; compared after every step.
void CheckAgainstReference(DType dtype) {
  const switchboard::OptimizerConfig config = Config(0.9, 0.95, 1e-8, 0.1);
  std::vector<Parameter> params;
  params.push_back(MakeParameter("w", ParamKind::kWeight, {256, 160}, dtype, Device::kCpu));
  params.push_back(MakeParameter("norm", ParamKind::kNorm, {13}, dtype, Device::kCpu));
  params.push_back(MakeParameter("emb", ParamKind::kEmbedding, {11, 4}, dtype, Device::kCpu));
  params.push_back(
      MakeParameter("e.{expert}.w", ParamKind::kExpert, {2, 3, 5}, dtype, Device::kCpu));
  std::vector<Parameter*> ptrs;
  std::vector<ReferenceAdamW> refs;
  for (size_t k = 0; k < params.size(); ++k) {
    Parameter& p = params[k];
    SetValues(p.value, Normal(100 + k, p.value.numel(), 0.5));
    ptrs.push_back(&p);
    // The reference starts from the values as rounded to dtype.
    refs.push_back({0.9, 0.95, 1e-8, UsesWeightDecay(config, p) ? 0.1 : 0.0,
                    p.value.ToDoubles(), {}, {}});
  }
  AdamW opt(config, ptrs);
  const int steps = 6;
  double lr_max = 0.0;
  for (int t = 0; t < steps; ++t) {
    const double lr = 1e-2 * (1.0 + 0.5 * std::sin(t));
    lr_max = std::max(lr_max, lr);
    for (size_t k = 0; k < params.size(); ++k) {
      SetValues(params[k].grad, Normal(1000 * (t + 1) + k, params[k].grad.numel()));
      refs[k].Step(lr, params[k].grad.ToDoubles());
    }
    opt.Step(lr);
    for (size_t k = 0; k < params.size(); ++k) {
      // Each step rounds p (size |p|) and the update (size <= lr * |m_hat /
      // sqrt(v_hat)|, at most ~3 here) a handful of times; errors add up.
      std::vector<double> tol(refs[k].p.size());
      for (size_t i = 0; i < tol.size(); ++i) {
        tol[i] = 8 * (t + 1) * Eps(dtype) * (std::fabs(refs[k].p[i]) + 3 * lr_max);
      }
      EXPECT_TRUE(AllClose(refs[k].p, params[k].value.ToDoubles(), tol))
          << params[k].name << " " << DTypeName(dtype) << " step " << t;
    }
  }
  // State holds the reference's moments.
  const auto state = opt.State();
  ASSERT_EQ(state.size(), 2 * params.size());
  for (size_t k = 0; k < params.size(); ++k) {
    std::vector<double> tol_m(refs[k].m.size()), tol_v(refs[k].v.size());
    for (size_t i = 0; i < tol_m.size(); ++i) {
      tol_m[i] = 8 * steps * Eps(dtype) * 4.0;  // |g| < ~4
      tol_v[i] = 8 * steps * Eps(dtype) * 16.0;
    }
    EXPECT_TRUE(AllClose(refs[k].m, state[2 * k].second.ToDoubles(), tol_m)) << state[2 * k].first;
    EXPECT_TRUE(AllClose(refs[k].v, state[2 * k + 1].second.ToDoubles(), tol_v))
        << state[2 * k + 1].first;
  }
}

TEST(AdamWTest, MatchesDoubleReferenceF32) { CheckAgainstReference(DType::kF32); }
TEST(AdamWTest, MatchesDoubleReferenceF64) { CheckAgainstReference(DType::kF64); }

// With zero gradients m = v = 0 and the Adam term is 0 / (0 + eps) = 0, so a
// step is exactly the decoupled decay p *= 1 - lr * wd, or nothing.
TEST(AdamWTest, WeightDecayAppliedByKind) {
  for (bool decay_norms_and_embeddings : {false, true}) {
    switchboard::OptimizerConfig config = Config(0.9, 0.95, 1e-8, 0.1);
    config.set_decay_norms(decay_norms_and_embeddings);
    config.set_decay_embeddings(decay_norms_and_embeddings);
    const ParamKind kinds[] = {ParamKind::kEmbedding, ParamKind::kNorm, ParamKind::kWeight,
                               ParamKind::kRouter, ParamKind::kExpert};
    std::vector<Parameter> params;
    for (ParamKind kind : kinds) {
      params.push_back(MakeParameter(ParamKindName(kind), kind, {3}, DType::kF32, Device::kCpu));
      SetValues(params.back().value, {1.0, -2.0, 3.0});
    }
    std::vector<Parameter*> ptrs;
    for (Parameter& p : params) ptrs.push_back(&p);
    AdamW opt(config, ptrs);
    opt.Step(0.5);  // decay factor 1 - 0.05 = 0.95
    for (const Parameter& p : params) {
      const bool decays = p.kind == ParamKind::kWeight || p.kind == ParamKind::kRouter ||
                          p.kind == ParamKind::kExpert || decay_norms_and_embeddings;
      const float f = decays ? 0.95f : 1.0f;
      EXPECT_EQ(p.value.ToDoubles(), (std::vector<double>{1.0f * f, -2.0f * f, 3.0f * f}))
          << p.name << " decay_norms_and_embeddings=" << decay_norms_and_embeddings;
    }
  }
}

// set_step(k) makes the next update use bias corrections for t = k + 1.
TEST(AdamWTest, SetStepSetsBiasCorrection) {
  Parameter p = MakeParameter("w", ParamKind::kNorm, {1}, DType::kF64, Device::kCpu);
  SetValues(p.value, {0.0});
  SetValues(p.grad, {1.0});
  AdamW opt(Config(0.5, 0.5, 0.0, 0.0), {&p});
  opt.set_step(1);
  opt.Step(1.0);  // t = 2: m = 0.5 -> m_hat = 2/3; v = 0.5 -> v_hat = 2/3, sqrt = 0.816..
  EXPECT_EQ(opt.step(), 2);
  const double want = -(2.0 / 3) / std::sqrt(2.0 / 3);
  EXPECT_NEAR(p.value.ToDoubles()[0], want, 4 * Eps(DType::kF64));
}

}  // namespace
}  // namespace sb
