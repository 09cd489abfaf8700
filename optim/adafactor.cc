// Adafactor as T5X computes it (see adafactor.h for the formulas, sources and
// every difference). Each [R, C] slice (or unfactored tensor) is updated by
// one call below; reductions run in f64 in a fixed order, so the result is
// independent of the thread count and of how many slices share a tensor.
#include "optim/adafactor.h"

#include <algorithm>
#include <cmath>

#include "moe/ops/dispatch.h"
#include "optim/device_updates.h"
#include "optim/reduce.h"

namespace sb {
namespace {

using optim_internal::DeterministicSum;
using optim_internal::kParallelMinElements;

// Columns per task when summing over rows of a row-major [R, C] slice.
constexpr int64_t kColumnBlock = 64;

using StepScalars = AdafactorScalars;

// lr * max(eps2, RMS(p)) (or lr), divided by the update-clipping denominator
// max(1, RMS(u) / d); sum_u2 = sum of u^2 over the slice's n elements.
double StepSize(const StepScalars& s, double sum_p2, double sum_u2, int64_t n) {
  double scale = 1.0;
  if (s.scale_by_param_rms) scale = std::max(s.eps2, std::sqrt(sum_p2 / n));
  double clip_denom = 1.0;
  if (s.clip_threshold > 0) clip_denom = std::max(1.0, std::sqrt(sum_u2 / n) / s.clip_threshold);
  return s.lr * scale / clip_denom;
}

// p = decay * p - upd, upd = step * u (or its running mean m when momentum).
template <typename T>
inline void ApplyElement(T u, T step, T decay, T* m, T beta1, T one_minus_beta1, T* p) {
  T upd = step * u;
  if (m != nullptr) {
    *m = beta1 * *m + one_minus_beta1 * upd;
    upd = *m;
  }
  *p = decay * *p - upd;
}

// One [R, C] matrix: p, g, m [R, C] (m null without momentum), row [R], col [C].
template <typename T>
void UpdateFactoredSlice(int64_t R, int64_t C, T* p, const T* g, T* row, T* col, T* m,
                         const StepScalars& s) {
  const int64_t n = R * C;
  const bool parallel = n > kParallelMinElements;
  std::vector<double> row_sum(static_cast<size_t>(R));  // per-row partials, reused

  // RMS(p) of the parameter before this update.
  double sum_p2 = 0.0;
  if (s.scale_by_param_rms) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < R; ++i) {
      double acc = 0.0;
      for (int64_t j = 0; j < C; ++j) acc += static_cast<double>(p[i * C + j]) * p[i * C + j];
      row_sum[i] = acc;
    }
    for (double a : row_sum) sum_p2 += a;
  }

  // row_i = b2t row_i + (1 - b2t) mean_j (g_ij^2 + eps1)
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < R; ++i) {
    double acc = 0.0;
    for (int64_t j = 0; j < C; ++j) acc += static_cast<double>(g[i * C + j]) * g[i * C + j] + s.eps1;
    row[i] = static_cast<T>(s.b2t * row[i] + (1.0 - s.b2t) * (acc / C));
  }
  // col_j = b2t col_j + (1 - b2t) mean_i (g_ij^2 + eps1): blocks of columns,
  // each column summed over i in order.
  std::vector<double> col_sum(static_cast<size_t>(C), 0.0);
  const int64_t blocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j0 = b * kColumnBlock, j1 = std::min(C, j0 + kColumnBlock);
    for (int64_t i = 0; i < R; ++i) {
      for (int64_t j = j0; j < j1; ++j) {
        col_sum[j] += static_cast<double>(g[i * C + j]) * g[i * C + j] + s.eps1;
      }
    }
  }
  for (int64_t j = 0; j < C; ++j) {
    col[j] = static_cast<T>(s.b2t * col[j] + (1.0 - s.b2t) * (col_sum[j] / R));
  }

  // u_ij = g_ij * row_factor_i * col_factor_j with row_factor = (row / mean(row))^-1/2
  // and col_factor = col^-1/2 (T5X's evaluation order).
  double row_mean = 0.0;
  for (int64_t i = 0; i < R; ++i) row_mean += static_cast<double>(row[i]);
  row_mean /= R;
  std::vector<T> row_factor(static_cast<size_t>(R)), col_factor(static_cast<size_t>(C));
  for (int64_t i = 0; i < R; ++i) {
    row_factor[i] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(row[i]) / row_mean));
  }
  for (int64_t j = 0; j < C; ++j) col_factor[j] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(col[j])));

  // RMS(u) for update clipping; u is recomputed below rather than stored.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < R; ++i) {
    double acc = 0.0;
    for (int64_t j = 0; j < C; ++j) {
      const T u = g[i * C + j] * row_factor[i] * col_factor[j];
      acc += static_cast<double>(u) * u;
    }
    row_sum[i] = acc;
  }
  double sum_u2 = 0.0;
  for (double a : row_sum) sum_u2 += a;

  const T step = static_cast<T>(StepSize(s, sum_p2, sum_u2, n));
  const T decay = static_cast<T>(s.decay_factor);
  const T beta1 = static_cast<T>(s.beta1), one_minus_beta1 = static_cast<T>(1.0 - s.beta1);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < R; ++i) {
    for (int64_t j = 0; j < C; ++j) {
      const int64_t k = i * C + j;
      const T u = g[k] * row_factor[i] * col_factor[j];
      ApplyElement(u, step, decay, m ? m + k : nullptr, beta1, one_minus_beta1, p + k);
    }
  }
}

// A 1-D (or 0-D) tensor: p, g, v, m [n] (m null without momentum).
template <typename T>
void UpdateUnfactored(int64_t n, T* p, const T* g, T* v, T* m, const StepScalars& s) {
  const bool parallel = n > kParallelMinElements;
  double sum_p2 = 0.0;
  if (s.scale_by_param_rms) {
    sum_p2 = DeterministicSum(n, [&](int64_t i) { return static_cast<double>(p[i]) * p[i]; });
  }
  // v = b2t v + (1 - b2t)(g^2 + eps1), elementwise in T as T5X does in f32.
  const T b2t = static_cast<T>(s.b2t), mix = static_cast<T>(1.0 - s.b2t);
  const T eps1 = static_cast<T>(s.eps1);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < n; ++i) v[i] = b2t * v[i] + mix * (g[i] * g[i] + eps1);
  // u = g / sqrt(v), recomputed for the update rather than stored.
  const double sum_u2 = DeterministicSum(n, [&](int64_t i) {
    const T u = g[i] / std::sqrt(v[i]);
    return static_cast<double>(u) * u;
  });
  const T step = static_cast<T>(StepSize(s, sum_p2, sum_u2, n));
  const T decay = static_cast<T>(s.decay_factor);
  const T beta1 = static_cast<T>(s.beta1), one_minus_beta1 = static_cast<T>(1.0 - s.beta1);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < n; ++i) {
    const T u = g[i] / std::sqrt(v[i]);
    ApplyElement(u, step, decay, m ? m + i : nullptr, beta1, one_minus_beta1, p + i);
  }
}

// `shape` without dimension `drop` (negative: from the end).
Shape WithoutDim(const Shape& shape, int drop) {
  Shape out = shape;
  out.erase(out.begin() + (drop < 0 ? static_cast<int>(shape.size()) + drop : drop));
  return out;
}

}  // namespace

Adafactor::Adafactor(const switchboard::OptimizerConfig& config, std::vector<Parameter*> params)
    : config_(config) {
  SB_CHECK(config.adafactor_beta1() >= 0 && config.adafactor_beta1() < 1)
      << "optimizer.adafactor_beta1 must be in [0, 1), got " << config.adafactor_beta1();
  const bool momentum = config.adafactor_beta1() > 0;
  slots_.reserve(params.size());
  for (Parameter* param : params) {
    SB_CHECK(param != nullptr) << "Adafactor: null parameter";
    optim_internal::CheckOptimizable(*param);
    const Tensor& value = param->value;
    Slot slot;
    slot.param = param;
    slot.weight_decay = UsesWeightDecay(config, *param) ? config.weight_decay() : 0.0;
    slot.factored = value.ndim() >= 2;
    if (slot.factored) {
      slot.row = Tensor::Zeros(WithoutDim(value.shape(), -1), value.dtype(), value.device());
      slot.col = Tensor::Zeros(WithoutDim(value.shape(), -2), value.dtype(), value.device());
    } else {
      slot.v = Tensor::Zeros(value.shape(), value.dtype(), value.device());
    }
    if (momentum) slot.exp_avg = Tensor::Zeros(value.shape(), value.dtype(), value.device());
    slots_.push_back(std::move(slot));
  }
}

void Adafactor::Step(double lr) {
  const int64_t t = step_ + 1;
  StepScalars s;
  s.lr = lr;
  s.b2t = 1.0 - std::pow(static_cast<double>(t), -config_.adafactor_decay_rate());
  s.eps1 = config_.adafactor_eps1();
  s.eps2 = config_.adafactor_eps2();
  s.clip_threshold = config_.adafactor_clip_threshold();
  s.scale_by_param_rms = config_.adafactor_scale_by_param_rms();
  s.beta1 = config_.adafactor_beta1();
  for (Slot& slot : slots_) {
    const Tensor& value = slot.param->value;
    if (value.numel() == 0) continue;
    s.decay_factor = 1.0 - lr * slot.weight_decay;
    if (value.device() == Device::kCuda) {
      SB_CALL_CUDA(value, AdafactorUpdate, value, slot.param->grad, slot.row, slot.col, slot.v,
                   slot.exp_avg, s);
      continue;
    }
    ops::ForFloat(value.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* p = value.data<T>();
      const T* g = slot.param->grad.data<T>();
      T* m = slot.exp_avg.defined() ? slot.exp_avg.data<T>() : nullptr;
      if (!slot.factored) {
        UpdateUnfactored<T>(value.numel(), p, g, slot.v.data<T>(), m, s);
        return;
      }
      const int64_t R = value.dim(-2), C = value.dim(-1);
      const int64_t slices = value.numel() / (R * C);
      for (int64_t k = 0; k < slices; ++k) {
        const int64_t offset = k * R * C;
        UpdateFactoredSlice<T>(R, C, p + offset, g + offset, slot.row.data<T>() + k * R,
                               slot.col.data<T>() + k * C, m ? m + offset : nullptr, s);
      }
    });
  }
  step_ = t;
}

std::vector<std::pair<std::string, Tensor>> Adafactor::State() {
  std::vector<std::pair<std::string, Tensor>> state;
  for (const Slot& slot : slots_) {
    const std::string& name = slot.param->name;
    if (slot.factored) {
      state.emplace_back(name + ".row", slot.row);
      state.emplace_back(name + ".col", slot.col);
    } else {
      state.emplace_back(name + ".v", slot.v);
    }
    if (slot.exp_avg.defined()) state.emplace_back(name + ".exp_avg", slot.exp_avg);
  }
  return state;
}

void Adafactor::set_step(int64_t step) {
  SB_CHECK_GE(step, 0) << "Adafactor::set_step";
  step_ = step;
}

}  // namespace sb
