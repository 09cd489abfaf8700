// CPU reference: router jitter, top-k, gates, capacity assignment, router
// losses and the row gathers/scatters that permute tokens to experts.
// Semantics: ../../../docs/moe_semantics.md.
#include <cmath>
#include <vector>

#include "moe/core/rng.h"
#include "moe/ops/dispatch.h"
#include "moe/ops/kernels/routing_rows.h"
#include "moe/ops/ops.h"

namespace sb::ops {

void RouterJitter(const Tensor& x, double eps, uint64_t key, const Tensor& noise,
                  const Tensor& out) {
  SB_ON_CUDA(x, RouterJitter, x, eps, key, noise, out);
  CheckSame(x, noise, "RouterJitter");
  CheckSame(x, out, "RouterJitter");
  const int64_t n = x.numel();
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* px = x.data<T>();
    T* pn = noise.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      pn[i] = static_cast<T>(1.0 - eps + 2.0 * eps * UniformAt(key, static_cast<uint64_t>(i)));
      po[i] = px[i] * pn[i];
    }
  });
}

void TopK(const Tensor& probs, int k, const Tensor& expert_ids, const Tensor& topk_probs) {
  SB_ON_CUDA(probs, TopK, probs, k, expert_ids, topk_probs);
  CheckSame(probs, topk_probs, "TopK");
  const int64_t rows = probs.dim(0), num_experts = probs.dim(1);
  SB_CHECK(k >= 1 && k <= num_experts) << "top_k " << k << " with " << num_experts << " experts";
  CheckShape(expert_ids, {rows, k}, "TopK expert_ids");
  int32_t* ids = expert_ids.data<int32_t>();
  ForFloat(probs.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = probs.data<T>();
    T* v = topk_probs.data<T>();
#pragma omp parallel for schedule(static) if (rows > 1024)
    for (int64_t t = 0; t < rows; ++t) {
      kernels::TopKRow(p + t * num_experts, static_cast<int>(num_experts), k, ids + t * k, v + t * k);
    }
  });
}

void RouterGates(const Tensor& topk_probs, bool normalize, const Tensor& gates) {
  SB_ON_CUDA(gates, RouterGates, topk_probs, normalize, gates);
  CheckSame(topk_probs, gates, "RouterGates");
  const int64_t rows = topk_probs.dim(0), k = topk_probs.dim(1);
  ForFloat(gates.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = topk_probs.data<T>();
    T* g = gates.data<T>();
    for (int64_t t = 0; t < rows; ++t) kernels::GatesRow(p + t * k, static_cast<int>(k), normalize, g + t * k);
  });
}

void RouterGatesBackward(const Tensor& topk_probs, const Tensor& gates, const Tensor& dgates,
                         bool normalize, const Tensor& dtopk_probs) {
  SB_ON_CUDA(gates, RouterGatesBackward, topk_probs, gates, dgates, normalize, dtopk_probs);
  CheckSame(topk_probs, dtopk_probs, "RouterGatesBackward");
  const int64_t rows = topk_probs.dim(0), k = topk_probs.dim(1);
  ForFloat(gates.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = topk_probs.data<T>();
    const T* g = gates.data<T>();
    const T* dg = dgates.data<T>();
    T* dp = dtopk_probs.data<T>();
    for (int64_t t = 0; t < rows; ++t) {
      kernels::GatesBackwardRow(p + t * k, g + t * k, dg + t * k, static_cast<int>(k), normalize,
                                dp + t * k);
    }
  });
}

void AssignSlots(const Tensor& expert_ids, int num_experts, int64_t capacity, const Tensor& slot,
                 const Tensor& routed, const Tensor& kept) {
  SB_ON_CUDA(expert_ids, AssignSlots, expert_ids, num_experts, capacity, slot, routed, kept);
  // Priority: choice rank, then token order (a sequential scan is the spec):
  // the ordered scan in token order with every choice active.
  AssignSlotsOrdered(expert_ids, nullptr, nullptr, num_experts, capacity, slot, routed, kept);
}

void PermutationIndices(const Tensor& expert_ids, const Tensor& slot, const Tensor& kept,
                        const Tensor& row_token, const Tensor& row_choice) {
  SB_ON_CUDA(expert_ids, PermutationIndices, expert_ids, slot, kept, row_token, row_choice);
  const int64_t rows = expert_ids.dim(0), k = expert_ids.dim(1), num_experts = kept.numel();
  const int32_t* ids = expert_ids.data<int32_t>();
  const int32_t* s = slot.data<int32_t>();
  const int32_t* nk = kept.data<int32_t>();
  std::vector<int64_t> offset(num_experts + 1, 0);
  for (int64_t e = 0; e < num_experts; ++e) offset[e + 1] = offset[e] + nk[e];
  SB_CHECK(row_token.numel() == offset[num_experts] && row_choice.numel() == offset[num_experts])
      << "PermutationIndices wants " << offset[num_experts] << " rows";
  int32_t* tok = row_token.data<int32_t>();
  int32_t* choice = row_choice.data<int32_t>();
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t r = 0; r < k; ++r) {
      if (s[t * k + r] < 0) continue;
      const int64_t row = offset[ids[t * k + r]] + s[t * k + r];
      tok[row] = static_cast<int32_t>(t);
      choice[row] = static_cast<int32_t>(t * k + r);
    }
  }
}

void ScatterTopK(const Tensor& expert_ids, const Tensor& dtopk_probs, const Tensor& dprobs) {
  SB_ON_CUDA(dprobs, ScatterTopK, expert_ids, dtopk_probs, dprobs);
  CheckSame(dtopk_probs, dprobs, "ScatterTopK");
  const int64_t rows = dprobs.dim(0), num_experts = dprobs.dim(1), k = expert_ids.dim(1);
  const int32_t* ids = expert_ids.data<int32_t>();
  ForFloat(dprobs.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* src = dtopk_probs.data<T>();
    T* dst = dprobs.data<T>();
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t r = 0; r < k; ++r) dst[t * num_experts + ids[t * k + r]] += src[t * k + r];
  });
}

double LoadBalancingLoss(const Tensor& probs, const Tensor& routed, int k) {
  SB_ON_CUDA(probs, LoadBalancingLoss, probs, routed, k);
  const int64_t rows = probs.dim(0), num_experts = probs.dim(1);
  CheckShape(routed, {num_experts}, "LoadBalancingLoss routed");
  const int32_t* nr = routed.data<int32_t>();
  std::vector<double> mean_p(num_experts, 0.0);
  double loss = 0.0;
  ForFloat(probs.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = probs.data<T>();
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t e = 0; e < num_experts; ++e) mean_p[e] += p[t * num_experts + e];
  });
  for (int64_t e = 0; e < num_experts; ++e) {
    const double f = static_cast<double>(nr[e]) / (rows * k);
    loss += f * mean_p[e] / rows;
  }
  return rows ? loss * num_experts : 0.0;
}

void LoadBalancingLossBackward(const Tensor& routed, int k, double grad_scale,
                               const Tensor& dprobs) {
  SB_ON_CUDA(dprobs, LoadBalancingLossBackward, routed, k, grad_scale, dprobs);
  const int64_t rows = dprobs.dim(0), num_experts = dprobs.dim(1);
  CheckShape(routed, {num_experts}, "LoadBalancingLossBackward routed");
  const int32_t* nr = routed.data<int32_t>();
  ForFloat(dprobs.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    T* dp = dprobs.data<T>();
    std::vector<T> c(num_experts);
    for (int64_t e = 0; e < num_experts; ++e) {
      const double f = static_cast<double>(nr[e]) / (rows * k);
      c[e] = static_cast<T>(grad_scale * num_experts * f / rows);
    }
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t e = 0; e < num_experts; ++e) dp[t * num_experts + e] += c[e];
  });
}

double RouterZLoss(const Tensor& lse) {
  SB_ON_CUDA(lse, RouterZLoss, lse);
  const int64_t rows = lse.numel();
  double loss = 0.0;
  ForFloat(lse.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* l = lse.data<T>();
    for (int64_t t = 0; t < rows; ++t) loss += static_cast<double>(l[t]) * l[t];
  });
  return rows ? loss / rows : 0.0;
}

void RouterZLossBackward(const Tensor& lse, const Tensor& probs, double grad_scale,
                         const Tensor& dlogits) {
  SB_ON_CUDA(dlogits, RouterZLossBackward, lse, probs, grad_scale, dlogits);
  CheckSame(probs, dlogits, "RouterZLossBackward");
  CheckSame(probs, lse, "RouterZLossBackward");
  const int64_t rows = probs.dim(0), num_experts = probs.dim(1);
  ForFloat(probs.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* l = lse.data<T>();
    const T* p = probs.data<T>();
    T* dl = dlogits.data<T>();
    for (int64_t t = 0; t < rows; ++t) {
      const T c = static_cast<T>(grad_scale * 2.0 * l[t] / rows);
      for (int64_t e = 0; e < num_experts; ++e) dl[t * num_experts + e] += c * p[t * num_experts + e];
    }
  });
}

double MeanEntropy(const Tensor& probs) {
  SB_ON_CUDA(probs, MeanEntropy, probs);
  const int64_t rows = probs.dim(0), cols = probs.dim(1);
  double total = 0.0;
  ForFloat(probs.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = probs.data<T>();
    for (int64_t i = 0; i < rows * cols; ++i)
      if (p[i] > 0) total -= static_cast<double>(p[i]) * std::log(static_cast<double>(p[i]));
  });
  return rows ? total / rows : 0.0;
}

void RouterSummary(const Tensor& probs, const Tensor& lse, const Tensor& routed,
                   const Tensor& kept, int k, const Tensor& summary) {
  SB_ON_CUDA(summary, RouterSummary, probs, lse, routed, kept, k, summary);
  const int64_t num_experts = probs.dim(1);
  CheckShape(summary, {3 + 2 * num_experts}, "RouterSummary summary");
  CheckShape(kept, {num_experts}, "RouterSummary kept");
  double* out = summary.data<double>();
  out[0] = LoadBalancingLoss(probs, routed, k);
  out[1] = RouterZLoss(lse);
  out[2] = MeanEntropy(probs);
  for (int64_t e = 0; e < num_experts; ++e) {
    out[3 + e] = routed.data<int32_t>()[e];
    out[3 + num_experts + e] = kept.data<int32_t>()[e];
  }
}

void GatherRows(const Tensor& src, const Tensor& index, const Tensor& dst, const Tensor* scale) {
  SB_ON_CUDA(dst, GatherRows, src, index, dst, scale);
  CheckSame(src, dst, "GatherRows");
  const int64_t m = index.numel(), n = src.dim(0), d = src.dim(1);
  CheckShape(dst, {m, d}, "GatherRows dst");
  const int32_t* idx = index.data<int32_t>();
  ForFloat(src.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* s = src.data<T>();
    T* o = dst.data<T>();
    const T* w = scale ? scale->data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (m * d > 65536)
    for (int64_t i = 0; i < m; ++i) {
      SB_CHECK(idx[i] >= 0 && idx[i] < n) << "row index " << idx[i] << " of " << n;
      const T* sr = s + idx[i] * d;
      T* orow = o + i * d;
      const T c = w ? w[i] : T(1);
      for (int64_t j = 0; j < d; ++j) orow[j] = c * sr[j];
    }
  });
}

void ScatterAddRows(const Tensor& src, const Tensor& index, const Tensor& dst,
                    const Tensor* scale) {
  SB_ON_CUDA(dst, ScatterAddRows, src, index, dst, scale);
  CheckSame(src, dst, "ScatterAddRows");
  const int64_t m = index.numel(), n = dst.dim(0), d = dst.dim(1);
  CheckShape(src, {m, d}, "ScatterAddRows src");
  const int32_t* idx = index.data<int32_t>();
  ForFloat(src.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* s = src.data<T>();
    T* o = dst.data<T>();
    const T* w = scale ? scale->data<T>() : nullptr;
    // Columns split across threads: rows may repeat, columns never collide,
    // and each destination sums its rows in index order (deterministic).
#pragma omp parallel for schedule(static) if (m * d > 65536)
    for (int64_t j0 = 0; j0 < d; j0 += 16) {
      const int64_t j1 = std::min<int64_t>(d, j0 + 16);
      for (int64_t i = 0; i < m; ++i) {
        SB_CHECK(idx[i] >= 0 && idx[i] < n) << "row index " << idx[i] << " of " << n;
        const T c = w ? w[i] : T(1);
        for (int64_t j = j0; j < j1; ++j) o[idx[i] * d + j] += c * s[i * d + j];
      }
    }
  });
}

void PaddedRowIndex(const std::vector<int64_t>& rows, int64_t pad_rows, const Tensor& index) {
  SB_ON_CUDA(index, PaddedRowIndex, rows, pad_rows, index);
  int64_t n = 0;
  for (int64_t r : rows) {
    SB_CHECK(r >= 0 && r <= pad_rows) << "PaddedRowIndex: " << r << " rows exceed the pad " << pad_rows;
    n += r;
  }
  CheckShape(index, {n}, "PaddedRowIndex index");
  int32_t* out = index.data<int32_t>();
  int64_t m = 0;
  for (size_t g = 0; g < rows.size(); ++g)
    for (int64_t i = 0; i < rows[g]; ++i) out[m++] = static_cast<int32_t>(g * pad_rows + i);
}

void GatherRowDot(const Tensor& a, const Tensor& index, const Tensor& b, const Tensor& out) {
  SB_ON_CUDA(out, GatherRowDot, a, index, b, out);
  CheckSame(a, b, "GatherRowDot");
  CheckSame(a, out, "GatherRowDot");
  const int64_t m = index.numel(), d = a.dim(1);
  CheckShape(b, {m, d}, "GatherRowDot b");
  const int32_t* idx = index.data<int32_t>();
  ForFloat(a.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(static) if (m * d > 65536)
    for (int64_t i = 0; i < m; ++i) {
      T acc = 0;
      for (int64_t j = 0; j < d; ++j) acc += pa[idx[i] * d + j] * pb[i * d + j];
      po[i] = acc;
    }
  });
}

}  // namespace sb::ops
