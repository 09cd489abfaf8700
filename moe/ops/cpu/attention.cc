// CPU reference: rotary position embedding (HF Llama rotate-half) and causal
// grouped-query attention. Attention keeps the [B, H, S, S] probabilities for
// backward (fine at CPU sizes; the CUDA path will recompute, FlashAttention-style).
#include <cblas.h>

#include <algorithm>
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
// Row-major GEMM on raw strided pointers: c = alpha * op(a) op(b) + beta * c.
void RawGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
             int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void RawGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
             int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}
}  // namespace

// Per (batch, head): P = softmax(mask(scale * Q K^T)) and O = P V as two
// GEMMs over strided head slices. The full S x S score GEMM computes the
// masked upper triangle too: 2x the causal FLOPs, but BLAS speed beats a
// hand loop over the triangle by more than that at S ~ 128-1024.
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
        const T* qbh = pq + b * S * qw + h * hd;
        const T* kbh = pk + b * S * kw + kvh * hd;
        const T* vbh = pv + b * S * kw + kvh * hd;
        T* p = pp + (b * H + h) * S * S;
        RawGemm(false, true, S, S, hd, scale, qbh, qw, kbh, kw, T(0), p, S);
        for (int64_t i = 0; i < S; ++i) {
          T* row = p + i * S;
          T mx = row[0];
          for (int64_t j = 1; j <= i; ++j) mx = std::max(mx, row[j]);
          T sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j <= i; ++j) sum += (row[j] = FastExp(row[j] - mx));
          const T inv = T(1) / sum;
          for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
          for (int64_t j = i + 1; j < S; ++j) row[j] = 0;
        }
        RawGemm(false, false, S, hd, S, T(1), p, S, vbh, kw, T(0), po + b * S * qw + h * hd, qw);
      }
    }
  });
}

// Per (batch, kv head), over the query heads of its group (they add into the
// same dK, dV, so one thread owns them):
//   dP = dO V^T;  dS = P o (dP - rowsum(P o dP));  dQ = scale dS K;
//   dK += scale dS^T Q;  dV += P^T dO.
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
#pragma omp parallel for collapse(2) schedule(static) if (B * H * S * S * hd > 65536)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
        std::vector<T> ds(static_cast<size_t>(S * S));
        const T* kb = pk + b * S * kw + kvh * hd;
        const T* vb = pv + b * S * kw + kvh * hd;
        T* dkb = pdk + b * S * kw + kvh * hd;
        T* dvb = pdv + b * S * kw + kvh * hd;
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          const T* p = pp + (b * H + h) * S * S;
          const T* dob = pdo + b * S * qw + h * hd;
          const T* qb = pq + b * S * qw + h * hd;
          const T beta = h == kvh * group ? T(0) : T(1);  // first head of the group overwrites
          RawGemm(false, true, S, S, hd, T(1), dob, qw, vb, kw, T(0), ds.data(), S);
          for (int64_t i = 0; i < S; ++i) {
            const T* pr = p + i * S;
            T* dr = ds.data() + i * S;
            T row_dot = 0;
#pragma omp simd reduction(+ : row_dot)
            for (int64_t j = 0; j <= i; ++j) row_dot += pr[j] * dr[j];
            // P is 0 above the diagonal, so dS is too.
#pragma omp simd
            for (int64_t j = 0; j < S; ++j) dr[j] = pr[j] * (dr[j] - row_dot);
          }
          RawGemm(false, false, S, hd, S, scale, ds.data(), S, kb, kw, T(0), pdq + b * S * qw + h * hd, qw);
          RawGemm(true, false, S, hd, S, scale, ds.data(), S, qb, qw, beta, dkb, kw);
          RawGemm(true, false, S, hd, S, T(1), p, S, dob, qw, beta, dvb, kw);
        }
      }
    }
  });
}

}  // namespace sb::ops
