// CPU reference of CachedAttentionForward: per (query token, head) one
// softmax over the visible cache rows. Decoding sees n = 1 query per step,
// so the loop is over heads (threads) and cache rows; no [S, S] matrix.
#include "moe/ops/kv_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "moe/ops/cpu/fast_math.h"
#include "moe/ops/dispatch.h"

namespace sb::ops {

void CachedAttentionForward(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                            int64_t past, int num_heads, const Tensor& out) {
  SB_CPU_ONLY(out, CachedAttentionForward);
  CheckSame(q, k_cache, "CachedAttentionForward");
  CheckSame(q, v_cache, "CachedAttentionForward");
  CheckSame(q, out, "CachedAttentionForward");
  const int64_t n = q.dim(0), H = num_heads, hd = q.dim(1) / H;
  const int64_t kw = k_cache.dim(1), Hkv = kw / hd, len = past + n;
  SB_CHECK(H * hd == q.dim(1) && Hkv * hd == kw && Hkv > 0 && H % Hkv == 0 && past >= 0)
      << "cached attention: q " << q.ToString() << " k " << k_cache.ToString() << " heads " << H;
  SB_CHECK(k_cache.dim(0) == len && v_cache.shape() == k_cache.shape())
      << "cached attention: cache " << k_cache.ToString() << " / " << v_cache.ToString()
      << " must hold past + n = " << len << " rows";
  CheckShape(out, q.shape(), "CachedAttentionForward out");
  const int64_t group = H / Hkv, qw = H * hd;
  ForFloat(q.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* pq = q.data<T>();
    const T* pk = k_cache.data<T>();
    const T* pv = v_cache.data<T>();
    T* po = out.data<T>();
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
#pragma omp parallel for collapse(2) schedule(static) if (n * H * len * hd > 65536)
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t visible = past + t + 1, kv = h / group;
        const T* qt = pq + t * qw + h * hd;
        std::vector<T> p(static_cast<size_t>(visible));
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < visible; ++j) {
          const T* kj = pk + j * kw + kv * hd;
          T dot = 0;
          for (int64_t d = 0; d < hd; ++d) dot += qt[d] * kj[d];
          p[j] = dot * scale;
          mx = std::max(mx, p[j]);
        }
        T sum = 0;
        for (int64_t j = 0; j < visible; ++j) sum += (p[j] = FastExp(p[j] - mx));
        T* ot = po + t * qw + h * hd;
        std::fill(ot, ot + hd, T(0));
        for (int64_t j = 0; j < visible; ++j) {
          const T w = p[j] / sum;
          const T* vj = pv + j * kw + kv * hd;
          for (int64_t d = 0; d < hd; ++d) ot[d] += w * vj[d];
        }
      }
    }
  });
}

}  // namespace sb::ops
