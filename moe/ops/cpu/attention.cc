// CPU reference: rotary position embedding (HF Llama rotate-half) and causal
// grouped-query attention. Attention keeps the [B, H, S, S] probabilities for
// backward (fine at CPU sizes; the CUDA path will recompute, FlashAttention-style).
#include <cmath>
#include <limits>
#include <vector>

#include "moe/ops/cpu/fast_math.h"
#include "moe/ops/dispatch.h"
#include "moe/ops/ops.h"

namespace sb::ops {

void RopeTables(int seq_len, int head_dim, double theta, const Tensor& cos, const Tensor& sin) {
  SB_CPU_ONLY(cos, RopeTables);
  const int half = head_dim / 2;
  CheckShape(cos, {seq_len, half}, "RopeTables cos");
  CheckShape(sin, {seq_len, half}, "RopeTables sin");
  ForFloat(cos.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    T* c = cos.data<T>();
    T* s = sin.data<T>();
    for (int p = 0; p < seq_len; ++p) {
      for (int i = 0; i < half; ++i) {
        // HF: inv_freq = 1 / theta^(2i / hd), computed in f32 there; f64 here.
        const double inv_freq = 1.0 / std::pow(theta, (2.0 * i) / head_dim);
        c[p * half + i] = static_cast<T>(std::cos(p * inv_freq));
        s[p * half + i] = static_cast<T>(std::sin(p * inv_freq));
      }
    }
  });
}

void Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int seq_len, bool inverse) {
  SB_ON_CUDA(x, Rope, x, cos, sin, seq_len, inverse);
  CheckSame(x, cos, "Rope");
  const int64_t rows = x.dim(0), width = x.dim(1);
  const int64_t half = cos.dim(1), hd = 2 * half, heads = width / hd;
  SB_CHECK_EQ(heads * hd, width);
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    T* px = x.data<T>();
    const T* pc = cos.data<T>();
    const T* ps = sin.data<T>();
    const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static) if (rows * width > 32768)
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t pos = t % seq_len;
      const T* c = pc + pos * half;
      const T* s = ps + pos * half;
      for (int64_t h = 0; h < heads; ++h) {
        T* v = px + t * width + h * hd;
        // [x1, x2] -> [x1 c - x2 s, x2 c + x1 s]; inverse uses -s.
        for (int64_t i = 0; i < half; ++i) {
          const T x1 = v[i], x2 = v[i + half], si = sign * s[i];
          v[i] = x1 * c[i] - x2 * si;
          v[i + half] = x2 * c[i] + x1 * si;
        }
      }
    }
  });
}

namespace {
template <typename T>
T Dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}
}  // namespace

void CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                            const Tensor& probs, const Tensor& out) {
  SB_CPU_ONLY(out, CausalAttentionForward);
  CheckSame(q, k, "CausalAttentionForward");
  CheckSame(q, v, "CausalAttentionForward");
  CheckSame(q, out, "CausalAttentionForward");
  const int64_t rows = q.dim(0), S = seq_len, B = rows / S;
  const int64_t H = probs.dim(1), hd = q.dim(1) / H, Hkv = k.dim(1) / hd, group = H / Hkv;
  SB_CHECK(B * S == rows && H * hd == q.dim(1) && Hkv * hd == k.dim(1) && Hkv * group == H)
      << "attention shapes q " << q.ToString() << " k " << k.ToString() << " probs "
      << probs.ToString();
  CheckShape(probs, {B, H, S, S}, "attention probs");
  const int64_t qw = H * hd, kw = Hkv * hd;
  ForFloat(q.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    T* pp = probs.data<T>();
    T* po = out.data<T>();
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
#pragma omp parallel for collapse(2) schedule(static) if (B * H * S * S * hd > 65536)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kvh = h / group;
        for (int64_t i = 0; i < S; ++i) {
          const T* qi = pq + (b * S + i) * qw + h * hd;
          T* p = pp + ((b * H + h) * S + i) * S;
          T mx = -std::numeric_limits<T>::infinity();
          for (int64_t j = 0; j <= i; ++j) {
            p[j] = scale * Dot(qi, pk + (b * S + j) * kw + kvh * hd, hd);
            mx = std::max(mx, p[j]);
          }
          T sum = 0;
          for (int64_t j = 0; j <= i; ++j) sum += (p[j] = FastExp(p[j] - mx));
          const T inv = T(1) / sum;
          for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
          for (int64_t j = i + 1; j < S; ++j) p[j] = 0;
          T* oi = po + (b * S + i) * qw + h * hd;
          for (int64_t d = 0; d < hd; ++d) oi[d] = 0;
          for (int64_t j = 0; j <= i; ++j) {
            const T* vj = pv + (b * S + j) * kw + kvh * hd;
            for (int64_t d = 0; d < hd; ++d) oi[d] += p[j] * vj[d];
          }
        }
      }
    }
  });
}

void CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& probs, const Tensor& dout, int seq_len,
                             const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  SB_CPU_ONLY(dq, CausalAttentionBackward);
  CheckSame(q, dout, "CausalAttentionBackward");
  const int64_t rows = q.dim(0), S = seq_len, B = rows / S;
  const int64_t H = probs.dim(1), hd = q.dim(1) / H, Hkv = k.dim(1) / hd, group = H / Hkv;
  const int64_t qw = H * hd, kw = Hkv * hd;
  CheckShape(dq, q.shape(), "dq");
  CheckShape(dk, k.shape(), "dk");
  CheckShape(dv, v.shape(), "dv");
  ForFloat(q.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    const T* pp = probs.data<T>();
    const T* pdo = dout.data<T>();
    T* pdq = dq.data<T>();
    T* pdk = dk.data<T>();
    T* pdv = dv.data<T>();
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
    // One task per (batch, kv head): the query heads of a group add into the
    // same dk/dv rows, so they stay on one thread.
#pragma omp parallel for collapse(2) schedule(static) if (B * H * S * S * hd > 65536)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
        std::vector<T> ds(static_cast<size_t>(S));
        for (int64_t j = 0; j < S; ++j) {
          T* dkj = pdk + (b * S + j) * kw + kvh * hd;
          T* dvj = pdv + (b * S + j) * kw + kvh * hd;
          for (int64_t d = 0; d < hd; ++d) dkj[d] = dvj[d] = 0;
        }
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          for (int64_t i = 0; i < S; ++i) {
            const T* p = pp + ((b * H + h) * S + i) * S;
            const T* doi = pdo + (b * S + i) * qw + h * hd;
            const T* qi = pq + (b * S + i) * qw + h * hd;
            // dP_ij = dout_i . v_j;  dS_ij = P_ij (dP_ij - sum_j P_ij dP_ij)
            T row_dot = 0;
            for (int64_t j = 0; j <= i; ++j) {
              ds[j] = Dot(doi, pv + (b * S + j) * kw + kvh * hd, hd);
              row_dot += p[j] * ds[j];
            }
            T* dqi = pdq + (b * S + i) * qw + h * hd;
            for (int64_t d = 0; d < hd; ++d) dqi[d] = 0;
            for (int64_t j = 0; j <= i; ++j) {
              const T dsj = p[j] * (ds[j] - row_dot) * scale;
              const T* kj = pk + (b * S + j) * kw + kvh * hd;
              T* dkj = pdk + (b * S + j) * kw + kvh * hd;
              T* dvj = pdv + (b * S + j) * kw + kvh * hd;
              for (int64_t d = 0; d < hd; ++d) {
                dqi[d] += dsj * kj[d];
                dkj[d] += dsj * qi[d];
                dvj[d] += p[j] * doi[d];
              }
            }
          }
        }
      }
    }
  });
}

}  // namespace sb::ops
