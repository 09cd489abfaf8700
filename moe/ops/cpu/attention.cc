// CPU reference: rotary position embedding (HF Llama rotate-half) and causal
// grouped-query attention, FlashAttention-style: blocks of queries against
// the keys they may see, the per-query log-sum-exp saved, the probabilities
// recomputed in backward (no [B, H, S, S] buffer).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "moe/ops/attention_sizes.h"
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

namespace {
// Query rows per block: a block's scores [kQueryBlock, keys] stay in cache,
// and causality trims the keys to the block's last row.
constexpr int64_t kQueryBlock = 64;

struct AttentionDims : AttentionSizes {
  int64_t group, qw, kw;
};

AttentionDims Dims(const Tensor& q, const Tensor& k, const Tensor& lse, int seq_len) {
  AttentionDims d;
  static_cast<AttentionSizes&>(d) = AttentionSizesOf(q, k, lse, seq_len);
  d.group = d.AttentionSizes::group();
  d.qw = d.H * d.hd;
  d.kw = d.Hkv * d.hd;
  return d;
}

// Turns scores p [rows, keys] (rows = queries i0.., keys <= i0 + rows) into
// probabilities with the causal mask: row r sees keys 0..i0 + r. With
// lse_in == nullptr (forward) it normalises and writes lse_out; otherwise it
// recomputes p = exp(s - lse) from the saved lse (backward).
template <typename T>
void CausalSoftmaxRows(T* p, int64_t rows, int64_t keys, int64_t i0, const T* lse_in,
                       T* lse_out) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = p + r * keys;
    const int64_t last = i0 + r;  // inclusive
    if (lse_in) {
      const T l = lse_in[r];
#pragma omp simd
      for (int64_t j = 0; j <= last; ++j) row[j] = FastExp(row[j] - l);
    } else {
      T mx = row[0];
      for (int64_t j = 1; j <= last; ++j) mx = std::max(mx, row[j]);
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j <= last; ++j) sum += (row[j] = FastExp(row[j] - mx));
      const T inv = T(1) / sum;
      for (int64_t j = 0; j <= last; ++j) row[j] *= inv;
      lse_out[r] = mx + std::log(sum);
    }
    for (int64_t j = last + 1; j < keys; ++j) row[j] = 0;
  }
}
}  // namespace

// Per (batch, head) and block of kQueryBlock queries i0..i1-1 (keys 0..i1-1):
//   P = causal softmax(scale Q_blk K^T);  O_blk = P V;  lse_i saved.
// Causality halves the FLOPs of the full [S, S] product.
void CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                            const Tensor& lse, const Tensor& out) {
  SB_ON_CUDA(out, CausalAttentionForward, q, k, v, seq_len, lse, out);
  CheckSame(q, k, "CausalAttentionForward");
  CheckSame(q, v, "CausalAttentionForward");
  CheckSame(q, out, "CausalAttentionForward");
  CheckSame(q, lse, "CausalAttentionForward");
  const AttentionDims d = Dims(q, k, lse, seq_len);
  ForFloat(q.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    T* pl = lse.data<T>();
    T* po = out.data<T>();
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d.hd)));
#pragma omp parallel for collapse(2) schedule(static) if (d.B * d.H * d.S * d.S * d.hd > 65536)
    for (int64_t b = 0; b < d.B; ++b) {
      for (int64_t h = 0; h < d.H; ++h) {
        std::vector<T> p(static_cast<size_t>(std::min(kQueryBlock, d.S) * d.S));
        const int64_t kvh = h / d.group;
        const T* kb = pk + b * d.S * d.kw + kvh * d.hd;
        const T* vb = pv + b * d.S * d.kw + kvh * d.hd;
        for (int64_t i0 = 0; i0 < d.S; i0 += kQueryBlock) {
          const int64_t rows = std::min(kQueryBlock, d.S - i0), keys = i0 + rows;
          const T* qb = pq + (b * d.S + i0) * d.qw + h * d.hd;
          RawGemm(false, true, rows, keys, d.hd, scale, qb, d.qw, kb, d.kw, T(0), p.data(), keys);
          CausalSoftmaxRows(p.data(), rows, keys, i0, static_cast<const T*>(nullptr),
                            pl + (b * d.H + h) * d.S + i0);
          RawGemm(false, false, rows, d.hd, keys, T(1), p.data(), keys, vb, d.kw, T(0),
                  po + (b * d.S + i0) * d.qw + h * d.hd, d.qw);
        }
      }
    }
  });
}

// Per (batch, kv head), over the query heads of its group (they add into the
// same dK, dV, so one thread owns them), per query block with recomputed P:
//   dP = dO V^T;  dS = P o (dP - rowsum(P o dP));  dQ = scale dS K;
//   dK += scale dS^T Q;  dV += P^T dO.
// (rowsum(P o dP) equals rowsum(dO o O), which the GPU kernels use.)
void CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const Tensor& dout,
                             int seq_len, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  SB_ON_CUDA(dq, CausalAttentionBackward, q, k, v, out, lse, dout, seq_len, dq, dk, dv);
  CheckSame(q, dout, "CausalAttentionBackward");
  CheckSame(q, lse, "CausalAttentionBackward");
  const AttentionDims d = Dims(q, k, lse, seq_len);
  CheckShape(dq, q.shape(), "dq");
  CheckShape(dk, k.shape(), "dk");
  CheckShape(dv, v.shape(), "dv");
  ForFloat(q.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    const T* pl = lse.data<T>();
    const T* pdo = dout.data<T>();
    T* pdq = dq.data<T>();
    T* pdk = dk.data<T>();
    T* pdv = dv.data<T>();
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d.hd)));
#pragma omp parallel for collapse(2) schedule(static) if (d.B * d.H * d.S * d.S * d.hd > 65536)
    for (int64_t b = 0; b < d.B; ++b) {
      for (int64_t kvh = 0; kvh < d.Hkv; ++kvh) {
        const size_t block = static_cast<size_t>(std::min(kQueryBlock, d.S) * d.S);
        std::vector<T> p(block), ds(block);
        const T* kb = pk + b * d.S * d.kw + kvh * d.hd;
        const T* vb = pv + b * d.S * d.kw + kvh * d.hd;
        T* dkb = pdk + b * d.S * d.kw + kvh * d.hd;
        T* dvb = pdv + b * d.S * d.kw + kvh * d.hd;
        for (int64_t s = 0; s < d.S; ++s) {
          std::fill(dkb + s * d.kw, dkb + s * d.kw + d.hd, T(0));
          std::fill(dvb + s * d.kw, dvb + s * d.kw + d.hd, T(0));
        }
        for (int64_t h = kvh * d.group; h < (kvh + 1) * d.group; ++h) {
          for (int64_t i0 = 0; i0 < d.S; i0 += kQueryBlock) {
            const int64_t rows = std::min(kQueryBlock, d.S - i0), keys = i0 + rows;
            const T* qb = pq + (b * d.S + i0) * d.qw + h * d.hd;
            const T* dob = pdo + (b * d.S + i0) * d.qw + h * d.hd;
            RawGemm(false, true, rows, keys, d.hd, scale, qb, d.qw, kb, d.kw, T(0), p.data(), keys);
            CausalSoftmaxRows(p.data(), rows, keys, i0, pl + (b * d.H + h) * d.S + i0,
                              static_cast<T*>(nullptr));
            RawGemm(false, true, rows, keys, d.hd, T(1), dob, d.qw, vb, d.kw, T(0), ds.data(), keys);
            for (int64_t r = 0; r < rows; ++r) {
              const T* pr = p.data() + r * keys;
              T* dr = ds.data() + r * keys;
              T row_dot = 0;
#pragma omp simd reduction(+ : row_dot)
              for (int64_t j = 0; j < keys; ++j) row_dot += pr[j] * dr[j];
              // P is 0 past the diagonal, so dS is too.
#pragma omp simd
              for (int64_t j = 0; j < keys; ++j) dr[j] = pr[j] * (dr[j] - row_dot);
            }
            RawGemm(false, false, rows, d.hd, keys, scale, ds.data(), keys, kb, d.kw, T(0),
                    pdq + (b * d.S + i0) * d.qw + h * d.hd, d.qw);
            RawGemm(true, false, keys, d.hd, rows, scale, ds.data(), keys, qb, d.qw, T(1), dkb, d.kw);
            RawGemm(true, false, keys, d.hd, rows, T(1), p.data(), keys, dob, d.qw, T(1), dvb, d.kw);
          }
        }
      }
    }
  });
}

}  // namespace sb::ops
