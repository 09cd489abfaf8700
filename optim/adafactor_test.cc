// Adafactor against an f64 re-implementation of the paper's Algorithms 4/5
// (explicit V = R C / (1^T R) with row/column SUMS, unlike adafactor.cc's
// means and factor form), plus exact small cases for update clipping and the
// parameter scale, the weight-decay rule, and the invariances the trainer
// relies on: an expert stack updated whole equals its experts updated one by
// one, and nothing depends on the OpenMP thread count.
#include "optim/adafactor.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "optim/test_util.h"

namespace sb {
namespace {

using optim_test::AllClose;
using optim_test::BitwiseEqual;
using optim_test::Eps;
using optim_test::Normal;
using optim_test::SetValues;

switchboard::OptimizerConfig Config() {
  switchboard::OptimizerConfig c;
  c.set_name(switchboard::OptimizerConfig::ADAFACTOR);
  c.set_weight_decay(0.0);
  return c;  // T5X defaults: decay 0.8, eps1 1e-30, eps2 1e-3, clip 1, param scale on
}

// Straightforward f64 Adafactor on one flat tensor of `shape`, slice by
// slice. Keeps the paper's row and column sums R, C.
struct ReferenceAdafactor {
  switchboard::OptimizerConfig config;
  Shape shape;
  double wd = 0.0;
  std::vector<double> p, m, R, C, v;
  int t = 0;
  bool clipped = false;     // update clipping was active in some slice
  double update_mag = 0.0;  // sum over steps of max |update| (error budget)

  void Step(double lr, const std::vector<double>& g) {
    ++t;
    const double b2 = 1.0 - std::pow(t, -config.adafactor_decay_rate());
    const bool factored = shape.size() >= 2;
    const int64_t rows = factored ? shape[shape.size() - 2] : 1;
    const int64_t cols = factored ? shape[shape.size() - 1] : static_cast<int64_t>(p.size());
    const int64_t n = rows * cols;
    const int64_t slices = static_cast<int64_t>(p.size()) / n;
    if (m.empty()) {
      m.assign(p.size(), 0.0);
      R.assign(slices * rows, 0.0);
      C.assign(slices * cols, 0.0);
      v.assign(p.size(), 0.0);
    }
    double max_update = 0.0;
    for (int64_t s = 0; s < slices; ++s) {
      auto at = [&](int64_t i, int64_t j) { return static_cast<size_t>(s * n + i * cols + j); };
      double scale = 1.0;
      if (config.adafactor_scale_by_param_rms()) {
        double ss = 0.0;
        for (int64_t k = 0; k < n; ++k) ss += p[s * n + k] * p[s * n + k];
        scale = std::max(config.adafactor_eps2(), std::sqrt(ss / n));
      }
      std::vector<double> u(static_cast<size_t>(n));
      const double e1 = config.adafactor_eps1();
      if (factored) {
        for (int64_t i = 0; i < rows; ++i) {
          double sum = 0.0;
          for (int64_t j = 0; j < cols; ++j) sum += g[at(i, j)] * g[at(i, j)] + e1;
          R[s * rows + i] = b2 * R[s * rows + i] + (1 - b2) * sum;
        }
        for (int64_t j = 0; j < cols; ++j) {
          double sum = 0.0;
          for (int64_t i = 0; i < rows; ++i) sum += g[at(i, j)] * g[at(i, j)] + e1;
          C[s * cols + j] = b2 * C[s * cols + j] + (1 - b2) * sum;
        }
        double total = 0.0;
        for (int64_t i = 0; i < rows; ++i) total += R[s * rows + i];
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t j = 0; j < cols; ++j) {
            const double V = R[s * rows + i] * C[s * cols + j] / total;
            u[i * cols + j] = g[at(i, j)] / std::sqrt(V);
          }
        }
      } else {
        for (int64_t k = 0; k < n; ++k) {
          v[k] = b2 * v[k] + (1 - b2) * (g[k] * g[k] + e1);
          u[k] = g[k] / std::sqrt(v[k]);
        }
      }
      double uu = 0.0;
      for (double x : u) uu += x * x;
      double denom = 1.0;
      if (config.adafactor_clip_threshold() > 0) {
        denom = std::max(1.0, std::sqrt(uu / n) / config.adafactor_clip_threshold());
      }
      clipped = clipped || denom > 1.0;
      const double b1 = config.adafactor_beta1();
      for (int64_t k = 0; k < n; ++k) {
        const size_t idx = static_cast<size_t>(s * n + k);
        double update = lr * scale * u[k] / denom;
        if (b1 > 0) update = m[idx] = b1 * m[idx] + (1 - b1) * update;
        p[idx] = (1 - lr * wd) * p[idx] - update;
        max_update = std::max(max_update, std::fabs(update));
      }
    }
    update_mag += max_update;
  }
};

// Runs `steps` updates of every (kind, shape) with random grads and a
// changing lr through Adafactor and the reference; compares params after
// every step and the final state (row/col running means = R / cols, C / rows).
struct Case {
  ParamKind kind;
  Shape shape;
};
void CheckAgainstReference(const switchboard::OptimizerConfig& config, const std::vector<Case>& cases,
                           DType dtype, int steps, bool expect_clipping = false) {
  std::vector<Parameter> params;
  std::vector<ReferenceAdafactor> refs;
  for (size_t k = 0; k < cases.size(); ++k) {
    params.push_back(MakeParameter("p" + std::to_string(k), cases[k].kind, cases[k].shape, dtype,
                                   Device::kCpu));
    SetValues(params[k].value, Normal(7 + k, params[k].value.numel(), 0.3));
    ReferenceAdafactor ref;
    ref.config = config;
    ref.shape = cases[k].shape;
    ref.wd = UsesWeightDecay(config, params[k]) ? config.weight_decay() : 0.0;
    ref.p = params[k].value.ToDoubles();
    refs.push_back(ref);
  }
  std::vector<Parameter*> ptrs;
  for (Parameter& p : params) ptrs.push_back(&p);
  Adafactor opt(config, ptrs);
  for (int t = 0; t < steps; ++t) {
    const double lr = 0.05 * (1.0 + 0.5 * std::cos(t));
    for (size_t k = 0; k < params.size(); ++k) {
      // Rows of very different scale make the factored estimate matter.
      std::vector<double> g = Normal(500 * (t + 1) + k, params[k].grad.numel());
      for (size_t i = 0; i < g.size(); ++i) g[i] *= 1.0 + static_cast<double>(i % 5);
      SetValues(params[k].grad, g);
      refs[k].Step(lr, params[k].grad.ToDoubles());
    }
    opt.Step(lr);
    for (size_t k = 0; k < params.size(); ++k) {
      // A handful of roundings per step of p and of the update, plus the
      // f64 sums over a slice (both sides sum naively; random-walk error
      // ~ sqrt(terms) eps64) that enter the update through V and RMS(u).
      const double terms = static_cast<double>(params[k].value.numel());
      const double update_rel = 16 * Eps(dtype) + 4 * std::sqrt(terms) * Eps(DType::kF64);
      std::vector<double> tol(refs[k].p.size());
      for (size_t i = 0; i < tol.size(); ++i) {
        tol[i] = 16 * Eps(dtype) * (t + 1) * std::fabs(refs[k].p[i]) +
                 update_rel * refs[k].update_mag;
      }
      EXPECT_TRUE(AllClose(refs[k].p, params[k].value.ToDoubles(), tol))
          << "p" << k << " " << ShapeToString(cases[k].shape) << " " << DTypeName(dtype)
          << " step " << t;
    }
  }
  const auto state = opt.State();
  size_t next = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    const ReferenceAdafactor& ref = refs[k];
    if (expect_clipping) {
      EXPECT_TRUE(ref.clipped) << "p" << k << ": clipping never active";
    }
    auto expect_state = [&](const char* slot, std::vector<double> want) {
      ASSERT_LT(next, state.size());
      EXPECT_EQ(state[next].first, params[k].name + "." + slot);
      double mag = 0.0;
      for (double x : want) mag = std::max(mag, std::fabs(x));
      EXPECT_TRUE(AllClose(want, state[next].second.ToDoubles(), 8 * steps * Eps(dtype) * mag))
          << state[next].first;
      ++next;
    };
    if (cases[k].shape.size() >= 2) {
      const double rows = static_cast<double>(cases[k].shape[cases[k].shape.size() - 2]);
      const double cols = static_cast<double>(cases[k].shape.back());
      std::vector<double> row = ref.R, col = ref.C;
      for (double& x : row) x /= cols;
      for (double& x : col) x /= rows;
      expect_state("row", row);
      expect_state("col", col);
    } else {
      expect_state("v", ref.v);
    }
    if (config.adafactor_beta1() > 0) expect_state("exp_avg", ref.m);
  }
  EXPECT_EQ(next, state.size());
}

const std::vector<Case> kMatrices = {{ParamKind::kWeight, {5, 7}},
                                     {ParamKind::kRouter, {7, 3}},
                                     {ParamKind::kExpert, {3, 4, 6}},
                                     {ParamKind::kWeight, {200, 180}}};  // OpenMP path

TEST(AdafactorTest, FactoredMatchesExplicitFormula) {
  switchboard::OptimizerConfig config = Config();
  config.set_weight_decay(0.1);
  for (DType dtype : {DType::kF32, DType::kF64}) CheckAgainstReference(config, kMatrices, dtype, 5);
}

TEST(AdafactorTest, UnfactoredVector) {
  switchboard::OptimizerConfig config = Config();
  config.set_weight_decay(0.1);
  const std::vector<Case> vectors = {{ParamKind::kNorm, {9}},
                                     {ParamKind::kWeight, {6}},
                                     {ParamKind::kNorm, {40000}}};  // OpenMP path
  for (DType dtype : {DType::kF32, DType::kF64}) CheckAgainstReference(config, vectors, dtype, 5);
}

TEST(AdafactorTest, FactoredWithClippingActive) {
  switchboard::OptimizerConfig config = Config();
  config.set_adafactor_clip_threshold(0.5);
  for (DType dtype : {DType::kF32, DType::kF64}) {
    CheckAgainstReference(config, kMatrices, dtype, 4, /*expect_clipping=*/true);
  }
}

TEST(AdafactorTest, MomentumAndNoParamScale) {
  switchboard::OptimizerConfig config = Config();
  config.set_adafactor_beta1(0.9);
  config.set_weight_decay(0.1);
  std::vector<Case> cases = kMatrices;
  cases.push_back({ParamKind::kNorm, {11}});
  for (DType dtype : {DType::kF32, DType::kF64}) CheckAgainstReference(config, cases, dtype, 6);
  config.set_adafactor_scale_by_param_rms(false);
  for (DType dtype : {DType::kF32, DType::kF64}) CheckAgainstReference(config, cases, dtype, 6);
}

// First step on a vector: b2t = 0, so v = g^2 + 1e-30 = g^2 exactly for |g| ~ 1
// and u = g / |g| = +-1 exactly; RMS(u) = 1. With lr = 0.1 and no param scale
// the step is 0.1 / max(1, 1 / threshold).
double FirstStepSize(double clip_threshold, double p0, bool scale_by_param_rms) {
  switchboard::OptimizerConfig config = Config();
  config.set_adafactor_clip_threshold(clip_threshold);
  config.set_adafactor_scale_by_param_rms(scale_by_param_rms);
  Parameter p = MakeParameter("v", ParamKind::kNorm, {4}, DType::kF64, Device::kCpu);
  SetValues(p.value, std::vector<double>(4, p0));
  SetValues(p.grad, {0.5, -1.5, 2.0, -0.25});
  Adafactor opt(config, {&p});
  opt.Step(0.1);
  const std::vector<double> after = p.value.ToDoubles();
  // Every element moved by the same amount against its gradient's sign.
  const double step = p0 - after[0];
  const std::vector<double> want = {p0 - step, p0 + step, p0 - step, p0 + step};
  EXPECT_TRUE(AllClose(want, after, 8 * Eps(DType::kF64) * (std::fabs(p0) + std::fabs(step))));
  return step;
}

TEST(AdafactorTest, UpdateClipping) {
  const double tol = 4 * Eps(DType::kF64);
  EXPECT_NEAR(FirstStepSize(0.5, 1.0, false), 0.05, tol);  // RMS 1 > 0.5: halved
  EXPECT_NEAR(FirstStepSize(0.25, 1.0, false), 0.025, tol);
  EXPECT_NEAR(FirstStepSize(2.0, 1.0, false), 0.1, tol);   // below threshold: untouched
  EXPECT_NEAR(FirstStepSize(0.0, 1.0, false), 0.1, tol);   // <= 0: clipping off
}

TEST(AdafactorTest, ParamScale) {
  const double tol = 16 * Eps(DType::kF64);
  EXPECT_NEAR(FirstStepSize(1.0, 3.0, true), 0.3, tol);      // lr * RMS(p) = 0.1 * 3
  EXPECT_NEAR(FirstStepSize(1.0, -3.0, true), 0.3, tol);
  EXPECT_NEAR(FirstStepSize(1.0, 1e-5, true), 1e-4, tol);    // RMS < eps2: 0.1 * 1e-3
  EXPECT_NEAR(FirstStepSize(1.0, 3.0, false), 0.1, tol);     // scale off: lr
}

// Zero gradients give u = 0, so a step is exactly p *= 1 - lr * wd or nothing.
TEST(AdafactorTest, WeightDecayAppliedByKind) {
  switchboard::OptimizerConfig config = Config();
  config.set_weight_decay(0.1);
  const ParamKind kinds[] = {ParamKind::kEmbedding, ParamKind::kNorm, ParamKind::kWeight,
                             ParamKind::kRouter, ParamKind::kExpert};
  std::vector<Parameter> params;
  for (ParamKind kind : kinds) {
    params.push_back(MakeParameter(ParamKindName(kind), kind, {1, 3}, DType::kF32, Device::kCpu));
    SetValues(params.back().value, {1.0, -2.0, 3.0});
  }
  params.push_back(MakeParameter("vector", ParamKind::kWeight, {3}, DType::kF32, Device::kCpu));
  SetValues(params.back().value, {1.0, -2.0, 3.0});
  std::vector<Parameter*> ptrs;
  for (Parameter& p : params) ptrs.push_back(&p);
  Adafactor opt(config, ptrs);
  opt.Step(0.5);  // decay factor 1 - 0.05 = 0.95
  for (const Parameter& p : params) {
    const float f = UsesWeightDecay(config, p) ? 0.95f : 1.0f;
    EXPECT_EQ(p.value.ToDoubles(), (std::vector<double>{1.0f * f, -2.0f * f, 3.0f * f})) << p.name;
  }
}

// The state of an expert stack [2, F, D] after updates as one tensor equals
// that of its two [1, F, D] halves updated as separate parameters, bit for
// bit: the update does not depend on how experts are sharded over ranks.
TEST(AdafactorTest, ExpertStackInvariance) {
  switchboard::OptimizerConfig config = Config();
  config.set_adafactor_beta1(0.9);
  config.set_weight_decay(0.1);
  config.set_adafactor_clip_threshold(0.5);
  for (const Shape& expert : {Shape{6, 5}, Shape{200, 180}}) {  // small, and the OpenMP path
    const int64_t n = expert[0] * expert[1];
    Parameter stack = MakeParameter("e.{expert}.w", ParamKind::kExpert, {2, expert[0], expert[1]},
                                    DType::kF32, Device::kCpu);
    Parameter half[2] = {
        MakeParameter("e.{expert}.w", ParamKind::kExpert, {1, expert[0], expert[1]}, DType::kF32,
                      Device::kCpu, 0),
        MakeParameter("e.{expert}.w", ParamKind::kExpert, {1, expert[0], expert[1]}, DType::kF32,
                      Device::kCpu, 1)};
    // Experts at very different scales, so per-expert statistics matter.
    std::vector<double> init = Normal(3, 2 * n, 0.02);
    for (int64_t i = n; i < 2 * n; ++i) init[i] *= 50.0;
    SetValues(stack.value, init);
    SetValues(half[0].value, std::vector<double>(init.begin(), init.begin() + n));
    SetValues(half[1].value, std::vector<double>(init.begin() + n, init.end()));
    Adafactor whole(config, {&stack});
    Adafactor split(config, {&half[0], &half[1]});
    for (int t = 0; t < 5; ++t) {
      std::vector<double> g = Normal(40 + t, 2 * n);
      for (int64_t i = 0; i < n; ++i) g[i] *= 1e-3;
      SetValues(stack.grad, g);
      SetValues(half[0].grad, std::vector<double>(g.begin(), g.begin() + n));
      SetValues(half[1].grad, std::vector<double>(g.begin() + n, g.end()));
      whole.Step(0.01 * (t + 1));
      split.Step(0.01 * (t + 1));
    }
    for (int e = 0; e < 2; ++e) {
      EXPECT_TRUE(BitwiseEqual(stack.value.Rows(e, e + 1), half[e].value)) << "expert " << e;
    }
    // State slots of the stack, expert e's rows, equal the halves' slots.
    const auto ws = whole.State();
    const auto ss = split.State();
    ASSERT_EQ(ws.size(), 3u);  // row, col, exp_avg
    ASSERT_EQ(ss.size(), 6u);
    for (size_t slot = 0; slot < ws.size(); ++slot) {
      EXPECT_EQ(ws[slot].first, ss[slot].first);
      for (int e = 0; e < 2; ++e) {
        EXPECT_TRUE(BitwiseEqual(ws[slot].second.Rows(e, e + 1), ss[3 * e + slot].second))
            << ws[slot].first << " expert " << e;
      }
    }
  }
}

// Reductions use fixed chunks: 1 thread and 2 threads give the same bits.
TEST(AdafactorTest, IndependentOfThreadCount) {
  switchboard::OptimizerConfig config = Config();
  config.set_adafactor_beta1(0.9);
  std::vector<Tensor> results[2];
  for (int run = 0; run < 2; ++run) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(run == 0 ? 1 : 2);
    Parameter m = MakeParameter("m", ParamKind::kWeight, {300, 200}, DType::kF32, Device::kCpu);
    Parameter v = MakeParameter("v", ParamKind::kNorm, {70000}, DType::kF32, Device::kCpu);
    SetValues(m.value, Normal(1, m.value.numel()));
    SetValues(v.value, Normal(2, v.value.numel()));
    Adafactor opt(config, {&m, &v});
    for (int t = 0; t < 3; ++t) {
      SetValues(m.grad, Normal(10 + t, m.grad.numel()));
      SetValues(v.grad, Normal(20 + t, v.grad.numel()));
      opt.Step(0.01);
    }
    results[run] = {m.value, v.value};
    for (const auto& entry : opt.State()) results[run].push_back(entry.second);
    omp_set_num_threads(saved);
  }
  ASSERT_EQ(results[0].size(), results[1].size());
  for (size_t i = 0; i < results[0].size(); ++i) {
    EXPECT_TRUE(BitwiseEqual(results[0][i], results[1][i])) << "tensor " << i;
  }
}

}  // namespace
}  // namespace sb
