// CPU reference of the routing variants: biased top-k (auxiliary-loss-free
// balancing), GShard's random second expert, V-MoE's batch priority, expert
// choice, noisy top-k gating with Shazeer's CV loss, and keyed expert
// dropout. Semantics: ../../../docs/moe_semantics.md, "Routing variants".
// Everything here is a sequential scan or per-row work: the routing tensors
// are [T, k] or [T, E], small next to the expert GEMMs.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "moe/core/rng.h"
#include "moe/ops/dispatch.h"
#include "moe/ops/ops.h"

namespace sb::ops {
namespace {

// softplus(x) = log(1 + e^x) without overflow.
double Softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
// Standard normal CDF and density.
double Phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }
double PhiDensity(double z) { return std::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI); }

// Ids of the n largest scores row[e] (+ bias[e] when given, added in T as
// the reference adds them) in descending order, ties to the lower id: n
// passes of argmax with a strict '>', as TopK.
template <typename T>
void RankRow(const T* row, const T* bias, int64_t E, int n, int32_t* ids) {
  for (int r = 0; r < n; ++r) {
    int32_t best = -1;
    T best_score = 0;
    for (int64_t e = 0; e < E; ++e) {
      bool taken = false;
      for (int q = 0; q < r; ++q) taken |= ids[q] == e;
      const T score = bias ? static_cast<T>(row[e] + bias[e]) : row[e];
      if (!taken && (best < 0 || score > best_score)) {
        best = static_cast<int32_t>(e);
        best_score = score;
      }
    }
    ids[r] = best;
  }
}

// CV(v)^2 = var / (mean^2 + 1e-10) and its gradient dcv[i] = d CV^2 / d v_i.
double CvSquared(const std::vector<double>& v, std::vector<double>* dcv) {
  const double n = static_cast<double>(v.size());
  double mean = 0;
  for (double x : v) mean += x;
  mean /= n;
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  var /= n;
  const double denom = mean * mean + 1e-10;
  if (dcv) {
    dcv->resize(v.size());
    // d var / d v_i = 2 (v_i - mean) / n (the mean's own term sums to 0).
    for (size_t i = 0; i < v.size(); ++i)
      (*dcv)[i] = 2.0 * (v[i] - mean) / n / denom - var * 2.0 * mean / n / (denom * denom);
  }
  return var / denom;
}

constexpr int kKeyChunks = 4;  // a 64-bit key as four 16-bit integers

}  // namespace

void BiasedTopK(const Tensor& probs, const Tensor& bias, int k, const Tensor& expert_ids,
                const Tensor& topk_probs) {
  SB_CPU_ONLY(probs, BiasedTopK);
  CheckSame(probs, topk_probs, "BiasedTopK");
  CheckSame(probs, bias, "BiasedTopK bias");
  const int64_t rows = probs.dim(0), E = probs.dim(1);
  SB_CHECK(k >= 1 && k <= E) << "top_k " << k << " with " << E << " experts";
  CheckShape(bias, {E}, "BiasedTopK bias");
  CheckShape(expert_ids, {rows, k}, "BiasedTopK expert_ids");
  int32_t* ids = expert_ids.data<int32_t>();
  ForFloat(probs.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = probs.data<T>();
    const T* b = bias.data<T>();
    T* v = topk_probs.data<T>();
#pragma omp parallel for schedule(static) if (rows > 1024)
    for (int64_t t = 0; t < rows; ++t) {
      RankRow(p + t * E, b, E, k, ids + t * k);
      for (int r = 0; r < k; ++r) v[t * k + r] = p[t * E + ids[t * k + r]];
    }
  });
}

void SampleSecondExpert(const Tensor& topk_probs, uint64_t key, const Tensor& active) {
  SB_CPU_ONLY(topk_probs, SampleSecondExpert);
  const int64_t rows = topk_probs.dim(0);
  SB_CHECK(topk_probs.dim(1) == 2) << "random second expert needs top-2, got " << topk_probs.ToString();
  CheckShape(active, {rows, 2}, "SampleSecondExpert active");
  const std::vector<double> p = topk_probs.ToDoubles();
  int32_t* a = active.data<int32_t>();
  for (int64_t t = 0; t < rows; ++t) {
    const double g2 = p[2 * t + 1] / (p[2 * t] + p[2 * t + 1]);
    a[2 * t] = 1;
    a[2 * t + 1] = UniformAt(key, static_cast<uint64_t>(t)) < 2.0 * g2 ? 1 : 0;
  }
}

void PriorityOrder(const Tensor& topk_probs, const Tensor& token_order) {
  SB_CPU_ONLY(topk_probs, PriorityOrder);
  const int64_t rows = topk_probs.dim(0), k = topk_probs.dim(1);
  CheckShape(token_order, {rows}, "PriorityOrder token_order");
  const std::vector<double> p = topk_probs.ToDoubles();  // exact for f32 and f64
  int32_t* order = token_order.data<int32_t>();
  std::iota(order, order + rows, 0);
  std::stable_sort(order, order + rows,
                   [&](int32_t a, int32_t b) { return p[a * k] > p[b * k]; });
}

void AssignSlotsOrdered(const Tensor& expert_ids, const Tensor* token_order,
                        const Tensor* active, int num_experts, int64_t capacity,
                        const Tensor& slot, const Tensor& routed, const Tensor& kept) {
  SB_CPU_ONLY(expert_ids, AssignSlotsOrdered);
  const int64_t rows = expert_ids.dim(0), k = expert_ids.dim(1);
  CheckShape(slot, {rows, k}, "AssignSlotsOrdered slot");
  CheckShape(routed, {num_experts}, "AssignSlotsOrdered routed");
  CheckShape(kept, {num_experts}, "AssignSlotsOrdered kept");
  if (token_order) CheckShape(*token_order, {rows}, "AssignSlotsOrdered token_order");
  if (active) CheckShape(*active, {rows, k}, "AssignSlotsOrdered active");
  const int32_t* ids = expert_ids.data<int32_t>();
  const int32_t* order = token_order ? token_order->data<int32_t>() : nullptr;
  const int32_t* on = active ? active->data<int32_t>() : nullptr;
  int32_t* s = slot.data<int32_t>();
  int32_t* nr = routed.data<int32_t>();
  int32_t* nk = kept.data<int32_t>();
  std::fill(nr, nr + num_experts, 0);
  std::fill(nk, nk + num_experts, 0);
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t t = order ? order[i] : i;
      SB_CHECK(t >= 0 && t < rows) << "token_order entry " << t;
      const int32_t e = ids[t * k + r];
      SB_CHECK(e >= 0 && e < num_experts) << "expert id " << e;
      if (on && !on[t * k + r]) {
        s[t * k + r] = -1;
        continue;
      }
      ++nr[e];
      s[t * k + r] = (capacity < 0 || nk[e] < capacity) ? nk[e]++ : -1;
    }
  }
}

void ExpertChoice(const Tensor& probs, int64_t capacity, const Tensor& expert_ids,
                  const Tensor& slot, const Tensor& kept) {
  SB_CPU_ONLY(probs, ExpertChoice);
  const int64_t rows = probs.dim(0), E = probs.dim(1);
  SB_CHECK(capacity >= 0) << "expert choice needs a capacity, got " << capacity;
  CheckShape(expert_ids, {rows, E}, "ExpertChoice expert_ids");
  CheckShape(slot, {rows, E}, "ExpertChoice slot");
  CheckShape(kept, {E}, "ExpertChoice kept");
  const int64_t c = std::min(capacity, rows);
  const std::vector<double> p = probs.ToDoubles();
  int32_t* ids = expert_ids.data<int32_t>();
  int32_t* s = slot.data<int32_t>();
  int32_t* nk = kept.data<int32_t>();
#pragma omp parallel for schedule(static) if (rows * E > 65536)
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int32_t> order(rows);
    std::iota(order.begin(), order.end(), 0);
    // Stable: equal probs keep token order, so the lower token wins the tie.
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return p[a * E + e] > p[b * E + e]; });
    for (int64_t t = 0; t < rows; ++t) {
      ids[t * E + e] = static_cast<int32_t>(e);
      s[t * E + e] = -1;
    }
    for (int64_t r = 0; r < c; ++r) s[order[r] * E + e] = static_cast<int32_t>(r);
    nk[e] = static_cast<int32_t>(c);
  }
}

void NoisyLogits(const Tensor& clean, const Tensor& noise_logits, uint64_t key, bool sample,
                 const Tensor& normal, const Tensor& noise_std, const Tensor& noisy) {
  SB_CPU_ONLY(clean, NoisyLogits);
  for (const Tensor* t : {&noise_logits, &normal, &noise_std, &noisy}) {
    CheckSame(clean, *t, "NoisyLogits");
    CheckShape(*t, clean.shape(), "NoisyLogits");
  }
  const int64_t n = clean.numel();
  ForFloat(clean.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* c = clean.data<T>();
    const T* nl = noise_logits.data<T>();
    T* z = normal.data<T>();
    T* sd = noise_std.data<T>();
    T* out = noisy.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      z[i] = sample ? static_cast<T>(NormalAt(key, static_cast<uint64_t>(i))) : T(0);
      sd[i] = static_cast<T>(Softplus(nl[i]));
      out[i] = c[i] + z[i] * sd[i];
    }
  });
}

void NoisyLogitsBackward(const Tensor& noise_logits, const Tensor& normal, const Tensor& dnoisy,
                         const Tensor& dnoise_std, const Tensor& dclean,
                         const Tensor& dnoise_logits) {
  SB_CPU_ONLY(dnoisy, NoisyLogitsBackward);
  for (const Tensor* t : {&normal, &dnoisy, &dnoise_std, &dclean, &dnoise_logits}) {
    CheckSame(noise_logits, *t, "NoisyLogitsBackward");
    CheckShape(*t, noise_logits.shape(), "NoisyLogitsBackward");
  }
  const int64_t n = dnoisy.numel();
  ForFloat(dnoisy.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* nl = noise_logits.data<T>();
    const T* z = normal.data<T>();
    const T* dn = dnoisy.data<T>();
    const T* dsd = dnoise_std.data<T>();
    T* dc = dclean.data<T>();
    T* dnl = dnoise_logits.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      dc[i] += dn[i];
      dnl[i] = static_cast<T>((dsd[i] + dn[i] * z[i]) * Sigmoid(nl[i]));
    }
  });
}

double NoisyTopKBalanceLoss(const Tensor& gates, const Tensor& expert_ids, const Tensor& clean,
                            const Tensor& noisy, const Tensor& noise_std, double grad_scale,
                            const Tensor& dgates, const Tensor& dclean, const Tensor& dnoise_std,
                            const Tensor& dnoisy) {
  SB_CPU_ONLY(clean, NoisyTopKBalanceLoss);
  const int64_t rows = clean.dim(0), E = clean.dim(1), k = expert_ids.dim(1);
  SB_CHECK(k < E) << "the CV load loss needs top_k < num_experts (" << k << " of " << E << ")";
  CheckShape(gates, {rows, k}, "NoisyTopKBalanceLoss gates");
  CheckShape(noisy, {rows, E}, "NoisyTopKBalanceLoss noisy");
  CheckShape(noise_std, {rows, E}, "NoisyTopKBalanceLoss noise_std");
  const std::vector<double> g = gates.ToDoubles(), c = clean.ToDoubles(), h = noisy.ToDoubles(),
                            sd = noise_std.ToDoubles();
  const int32_t* ids = expert_ids.data<int32_t>();
  // Per (t, e): z = (clean - threshold) / std and the expert whose noisy
  // logit is the threshold: the (k+1)-th largest for e in the token's top-k
  // of the noisy logits, else the k-th.
  std::vector<double> importance(E, 0.0), load(E, 0.0), z(rows * E);
  std::vector<int32_t> threshold_id(rows * E), ranked(k + 1);
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t r = 0; r < k; ++r) importance[ids[t * k + r]] += g[t * k + r];
    RankRow<double>(h.data() + t * E, nullptr, E, static_cast<int>(k + 1), ranked.data());
    for (int64_t e = 0; e < E; ++e) {
      bool in_top = false;
      for (int64_t r = 0; r < k; ++r) in_top |= ranked[r] == e;
      const int j = in_top ? ranked[k] : ranked[k - 1];
      const int64_t i = t * E + e;
      threshold_id[i] = j;
      z[i] = (c[i] - h[t * E + j]) / sd[i];
      load[e] += Phi(z[i]);
    }
  }
  std::vector<double> dimportance, dload;
  const bool grad = grad_scale != 0.0;
  const double loss = CvSquared(importance, grad ? &dimportance : nullptr) +
                      CvSquared(load, grad ? &dload : nullptr);
  if (!grad) return loss;
  for (const Tensor* t : {&dclean, &dnoise_std, &dnoisy}) CheckSame(clean, *t, "NoisyTopKBalanceLoss");
  CheckSame(clean, dgates, "NoisyTopKBalanceLoss dgates");
  ForFloat(clean.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    T* dg = dgates.data<T>();
    T* dc = dclean.data<T>();
    T* dsd = dnoise_std.data<T>();
    T* dh = dnoisy.data<T>();
    for (int64_t t = 0; t < rows; ++t) {
      for (int64_t r = 0; r < k; ++r)
        dg[t * k + r] += static_cast<T>(grad_scale * dimportance[ids[t * k + r]]);
      for (int64_t e = 0; e < E; ++e) {
        const int64_t i = t * E + e;
        // dP/dclean = phi/std, dP/dthreshold = -phi/std, dP/dstd = -phi z/std.
        const double w = grad_scale * dload[e] * PhiDensity(z[i]) / sd[i];
        dc[i] += static_cast<T>(w);
        dh[t * E + threshold_id[i]] -= static_cast<T>(w);
        dsd[i] -= static_cast<T>(w * z[i]);
      }
    }
  });
  return loss;
}

void ExpertRowKeys(const Tensor& expert_ids, const Tensor& row_choice, uint64_t base_key,
                   const Tensor& keys) {
  SB_CPU_ONLY(keys, ExpertRowKeys);
  const int64_t n = row_choice.numel(), k = expert_ids.dim(1);
  CheckShape(keys, {n, kKeyChunks}, "ExpertRowKeys keys");
  const int32_t* ids = expert_ids.data<int32_t>();
  const int32_t* choice = row_choice.data<int32_t>();
  ForFloat(keys.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    T* out = keys.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t t = static_cast<uint64_t>(choice[i] / k);
      const uint64_t e = static_cast<uint64_t>(ids[choice[i]]);
      const uint64_t key = StreamKey({base_key, t, e});
      for (int q = 0; q < kKeyChunks; ++q)
        out[i * kKeyChunks + q] = static_cast<T>((key >> (16 * q)) & 0xffff);
    }
  });
}

void KeyedDropout(const Tensor& keys, double rate, const Tensor& x) {
  SB_CPU_ONLY(x, KeyedDropout);
  CheckSame(keys, x, "KeyedDropout");
  const int64_t n = x.dim(0), f = x.dim(1);
  CheckShape(keys, {n, kKeyChunks}, "KeyedDropout keys");
  SB_CHECK(rate >= 0 && rate < 1) << "dropout rate " << rate;
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* kp = keys.data<T>();
    T* px = x.data<T>();
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
#pragma omp parallel for schedule(static) if (n * f > 65536)
    for (int64_t i = 0; i < n; ++i) {
      uint64_t key = 0;
      for (int q = 0; q < kKeyChunks; ++q)
        key |= static_cast<uint64_t>(kp[i * kKeyChunks + q]) << (16 * q);
      T* row = px + i * f;
      for (int64_t j = 0; j < f; ++j)
        row[j] = UniformAt(key, static_cast<uint64_t>(j)) >= rate ? row[j] * scale : T(0);
    }
  });
}

}  // namespace sb::ops
