// The own causal GQA attention (f32) that the GPU runs in f32 mode and that
// tests use as the reference for cuDNN's bf16 attention. One GPU thread per
// query (forward, dQ) or per key (dK, dV); the functions below are that
// thread's work, so that a CPU test can run every "thread" in a loop and
// check them against ops::CausalAttention* (attention_reference_test.cc).
// Online softmax (Milakov & Gimelshein 2018): no [S, S] buffer; the
// backward recomputes p_ij = exp(s_ij - lse_i) and uses
// delta_i = dO_i . O_i (FlashAttention-2, Dao 2023). Slow (O(S^2 hd) per
// head with little parallelism) but simple and deterministic.
#pragma once

#include <cmath>
#include <cstdint>

#include "moe/core/host_device.h"

namespace sb::ops::kernels {

constexpr int kMaxReferenceHeadDim = 256;

// Layout: q, out, dq, dout [B*S, H*hd]; k, v, dk, dv [B*S, Hkv*hd];
// lse [B, H, S]; token (b, s) is row b*S + s; head h reads kv head h / group.
struct AttentionLayout {
  int64_t B, S, H, Hkv, hd;
  float scale;  // 1 / sqrt(hd)
  SB_HOST_DEVICE int64_t group() const { return H / Hkv; }
  SB_HOST_DEVICE int64_t QRow(int64_t b, int64_t s, int64_t h) const { return ((b * S + s) * H + h) * hd; }
  SB_HOST_DEVICE int64_t KvRow(int64_t b, int64_t s, int64_t kvh) const {
    return ((b * S + s) * Hkv + kvh) * hd;
  }
  SB_HOST_DEVICE int64_t Lse(int64_t b, int64_t h, int64_t s) const { return (b * H + h) * S + s; }
};

SB_HOST_DEVICE inline float Dot(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
  for (int64_t d = 0; d < n; ++d) acc += a[d] * b[d];
  return acc;
}

// out and lse of query (b, h, i).
SB_HOST_DEVICE inline void ReferenceAttentionQuery(const AttentionLayout& L, const float* q,
                                                   const float* k, const float* v, int64_t b,
                                                   int64_t h, int64_t i, float* out, float* lse) {
  const int64_t kvh = h / L.group();
  const float* qi = q + L.QRow(b, i, h);
  float acc[kMaxReferenceHeadDim];
  for (int64_t d = 0; d < L.hd; ++d) acc[d] = 0.f;
  float m = -INFINITY, s = 0.f;
  for (int64_t j = 0; j <= i; ++j) {
    const float* vj = v + L.KvRow(b, j, kvh);
    const float x = L.scale * Dot(qi, k + L.KvRow(b, j, kvh), L.hd);
    if (x > m) {  // rescale what was summed so far to the new maximum
      const float c = m == -INFINITY ? 0.f : expf(m - x);
      s = s * c + 1.f;
      for (int64_t d = 0; d < L.hd; ++d) acc[d] = acc[d] * c + vj[d];
      m = x;
    } else {
      const float w = expf(x - m);
      s += w;
      for (int64_t d = 0; d < L.hd; ++d) acc[d] += w * vj[d];
    }
  }
  float* oi = out + L.QRow(b, i, h);
  for (int64_t d = 0; d < L.hd; ++d) oi[d] = acc[d] / s;
  lse[L.Lse(b, h, i)] = m + logf(s);
}

// dq of query (b, h, i): sum_j scale ds_ij k_j, ds_ij = p_ij (dO_i . v_j - delta_i).
SB_HOST_DEVICE inline void ReferenceAttentionDq(const AttentionLayout& L, const float* q,
                                                const float* k, const float* v, const float* out,
                                                const float* lse, const float* dout, int64_t b,
                                                int64_t h, int64_t i, float* dq) {
  const int64_t kvh = h / L.group();
  const float* qi = q + L.QRow(b, i, h);
  const float* doi = dout + L.QRow(b, i, h);
  const float delta = Dot(doi, out + L.QRow(b, i, h), L.hd);
  const float li = lse[L.Lse(b, h, i)];
  float acc[kMaxReferenceHeadDim];
  for (int64_t d = 0; d < L.hd; ++d) acc[d] = 0.f;
  for (int64_t j = 0; j <= i; ++j) {
    const float* kj = k + L.KvRow(b, j, kvh);
    const float p = expf(L.scale * Dot(qi, kj, L.hd) - li);
    const float ds = p * (Dot(doi, v + L.KvRow(b, j, kvh), L.hd) - delta);
    for (int64_t d = 0; d < L.hd; ++d) acc[d] += L.scale * ds * kj[d];
  }
  float* dqi = dq + L.QRow(b, i, h);
  for (int64_t d = 0; d < L.hd; ++d) dqi[d] = acc[d];
}

// dk, dv of key (b, kvh, j): over the group's query heads and queries i >= j,
// dv += p_ij dO_i and dk += scale ds_ij q_i.
SB_HOST_DEVICE inline void ReferenceAttentionDkv(const AttentionLayout& L, const float* q,
                                                 const float* k, const float* v, const float* out,
                                                 const float* lse, const float* dout, int64_t b,
                                                 int64_t kvh, int64_t j, float* dk, float* dv) {
  const float* kj = k + L.KvRow(b, j, kvh);
  const float* vj = v + L.KvRow(b, j, kvh);
  float acc_k[kMaxReferenceHeadDim], acc_v[kMaxReferenceHeadDim];
  for (int64_t d = 0; d < L.hd; ++d) acc_k[d] = acc_v[d] = 0.f;
  for (int64_t h = kvh * L.group(); h < (kvh + 1) * L.group(); ++h) {
    for (int64_t i = j; i < L.S; ++i) {
      const float* qi = q + L.QRow(b, i, h);
      const float* doi = dout + L.QRow(b, i, h);
      const float p = expf(L.scale * Dot(qi, kj, L.hd) - lse[L.Lse(b, h, i)]);
      const float ds = p * (Dot(doi, vj, L.hd) - Dot(doi, out + L.QRow(b, i, h), L.hd));
      for (int64_t d = 0; d < L.hd; ++d) {
        acc_v[d] += p * doi[d];
        acc_k[d] += L.scale * ds * qi[d];
      }
    }
  }
  float* dkj = dk + L.KvRow(b, j, kvh);
  float* dvj = dv + L.KvRow(b, j, kvh);
  for (int64_t d = 0; d < L.hd; ++d) {
    dkj[d] = acc_k[d];
    dvj[d] = acc_v[d];
  }
}

}  // namespace sb::ops::kernels
