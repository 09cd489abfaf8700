// AdamW as torch.optim.AdamW (see adamw.h for the formulas and sources).
#include "optim/adamw.h"

#include <cmath>

#include "moe/ops/dispatch.h"
#include "optim/device_updates.h"
#include "optim/reduce.h"

namespace sb {
namespace {

// One AdamW update of n elements; p, g, m, v all [n] of type T.
template <typename T>
void AdamWUpdate(int64_t n, T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v,
                 const AdamWScalars& s) {
  const T decay = static_cast<T>(s.decay_factor);
  const T w1 = static_cast<T>(s.one_minus_b1);
  const T b2 = static_cast<T>(s.beta2);
  const T w2 = static_cast<T>(s.one_minus_b2);
  const T step_size = static_cast<T>(s.step_size);
  const T bc2_sqrt = static_cast<T>(s.bc2_sqrt);
  const T eps = static_cast<T>(s.eps);
  const bool lerp_from_m = std::abs(s.one_minus_b1) < 0.5;
  // One vectorised pass (CMakeLists.txt: -fno-math-errno lets sqrt vectorise).
#pragma omp parallel for simd schedule(static) if (n > optim_internal::kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    p[i] *= decay;
    // PyTorch's lerp(m, g, w) picks its form by w to keep the rounding small.
    m[i] = lerp_from_m ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * (T(1) - w1);
    v[i] = v[i] * b2 + w2 * gi * gi;
    const T denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    p[i] -= step_size * m[i] / denom;  // addcdiv: (value * t1) / t2
  }
}

}  // namespace

AdamW::AdamW(const switchboard::OptimizerConfig& config, std::vector<Parameter*> params)
    : beta1_(config.beta1()), beta2_(config.beta2()), eps_(config.eps()) {
  slots_.reserve(params.size());
  for (Parameter* param : params) {
    SB_CHECK(param != nullptr) << "AdamW: null parameter";
    optim_internal::CheckOptimizable(*param);
    const Tensor& value = param->value;
    slots_.push_back({param, UsesWeightDecay(config, *param) ? config.weight_decay() : 0.0,
                      Tensor::Zeros(value.shape(), value.dtype(), value.device()),
                      Tensor::Zeros(value.shape(), value.dtype(), value.device())});
  }
}

void AdamW::Step(double lr) {
  const int64_t t = step_ + 1;
  AdamWScalars s;
  s.one_minus_b1 = 1.0 - beta1_;
  s.beta2 = beta2_;
  s.one_minus_b2 = 1.0 - beta2_;
  s.step_size = lr / (1.0 - std::pow(beta1_, static_cast<double>(t)));
  s.bc2_sqrt = std::sqrt(1.0 - std::pow(beta2_, static_cast<double>(t)));
  s.eps = eps_;
  for (Slot& slot : slots_) {
    s.decay_factor = 1.0 - lr * slot.weight_decay;
    const Parameter& p = *slot.param;
    if (p.value.device() == Device::kCuda) {
      SB_CALL_CUDA(p.value, AdamWUpdate, p.value, p.grad, slot.exp_avg, slot.exp_avg_sq, s);
      continue;
    }
    ops::ForFloat(p.value.dtype(), [&](auto tag) {
      using T = decltype(tag);
      AdamWUpdate<T>(p.value.numel(), p.value.data<T>(), p.grad.data<T>(),
                     slot.exp_avg.data<T>(), slot.exp_avg_sq.data<T>(), s);
    });
  }
  step_ = t;
}

std::vector<std::pair<std::string, Tensor>> AdamW::State() {
  std::vector<std::pair<std::string, Tensor>> state;
  state.reserve(2 * slots_.size());
  for (const Slot& slot : slots_) {
    state.emplace_back(slot.param->name + ".exp_avg", slot.exp_avg);
    state.emplace_back(slot.param->name + ".exp_avg_sq", slot.exp_avg_sq);
  }
  return state;
}

void AdamW::set_step(int64_t step) {
  SB_CHECK_GE(step, 0) << "AdamW::set_step";
  step_ = step;
}

}  // namespace sb
