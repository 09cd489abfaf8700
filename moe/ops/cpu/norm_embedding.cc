// CPU reference: token embedding lookup and RMSNorm, forward and backward.
#include <algorithm>
#include <cmath>
#include <vector>

#include "moe/ops/dispatch.h"
#include "moe/ops/ops.h"

namespace sb::ops {

void EmbeddingForward(const Tensor& ids, const Tensor& table, const Tensor& out) {
  SB_ON_CUDA(out, EmbeddingForward, ids, table, out);
  CheckSame(table, out, "EmbeddingForward");
  const int64_t num_tokens = ids.numel(), vocab = table.dim(0), d = table.dim(1);
  CheckShape(out, {num_tokens, d}, "EmbeddingForward out");
  const int32_t* id = ids.data<int32_t>();
  ForFloat(table.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* w = table.data<T>();
    T* o = out.data<T>();
    for (int64_t t = 0; t < num_tokens; ++t) {
      SB_CHECK(id[t] >= 0 && id[t] < vocab) << "token id " << id[t] << " outside vocab " << vocab;
      std::copy(w + id[t] * d, w + (id[t] + 1) * d, o + t * d);
    }
  });
}

void EmbeddingBackward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) {
  SB_ON_CUDA(dtable, EmbeddingBackward, ids, dout, dtable);
  CheckSame(dout, dtable, "EmbeddingBackward");
  const int64_t num_tokens = ids.numel(), d = dtable.dim(1);
  CheckShape(dout, {num_tokens, d}, "EmbeddingBackward dout");
  const int32_t* id = ids.data<int32_t>();
  // Sequential over tokens: repeated ids would race if split by token.
  ForFloat(dtable.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* g = dout.data<T>();
    T* w = dtable.data<T>();
    for (int64_t t = 0; t < num_tokens; ++t) {
      T* row = w + id[t] * d;
      const T* grow = g + t * d;
      for (int64_t j = 0; j < d; ++j) row[j] += grow[j];
    }
  });
}

void RmsNormForward(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                    const Tensor& rstd) {
  SB_ON_CUDA(y, RmsNormForward, x, w, eps, y, rstd);
  CheckSame(x, w, "RmsNormForward");
  CheckSame(x, y, "RmsNormForward");
  CheckSame(x, rstd, "RmsNormForward");
  const int64_t rows = x.dim(0), d = x.dim(1);
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* px = x.data<T>();
    const T* pw = w.data<T>();
    T* py = y.data<T>();
    T* pr = rstd.data<T>();
#pragma omp parallel for schedule(static) if (rows * d > 32768)
    for (int64_t t = 0; t < rows; ++t) {
      const T* xr = px + t * d;
      double ss = 0.0;
      // simd: a vector reduction (GCC keeps a plain one scalar, in order).
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xr[j]) * xr[j];
      const T r = static_cast<T>(1.0 / std::sqrt(ss / d + eps));
      pr[t] = r;
      T* yr = py + t * d;
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) yr[j] = xr[j] * r * pw[j];
    }
  });
}

void RmsNormBackward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                     const Tensor& dx, const Tensor& dw) {
  SB_ON_CUDA(dx, RmsNormBackward, x, w, rstd, dy, dx, dw);
  CheckSame(x, dy, "RmsNormBackward");
  CheckSame(x, dx, "RmsNormBackward");
  CheckSame(w, dw, "RmsNormBackward");
  const int64_t rows = x.dim(0), d = x.dim(1);
  // y_j = x_j r w_j, r = (mean x^2 + eps)^-1/2:
  // dx_j = r (g_j - x_j r^2 mean_i(g_i x_i)),  g = dy * w;  dw_j = sum_t dy_j x_j r.
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* px = x.data<T>();
    const T* pw = w.data<T>();
    const T* pr = rstd.data<T>();
    const T* pdy = dy.data<T>();
    T* pdx = dx.data<T>();
    // dw by blocks of kBlock rows read row by row (the column-by-column
    // pass this replaces read every row d times), partial sums in f64, then
    // the blocks summed in order: the same result for any thread count.
    constexpr int64_t kBlock = 64;
    const int64_t blocks = (rows + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(blocks * d), 0.0);
#pragma omp parallel for schedule(static) if (rows * d > 32768)
    for (int64_t b = 0; b < blocks; ++b) {
      double* acc = partial.data() + b * d;
      for (int64_t t = b * kBlock; t < std::min(rows, (b + 1) * kBlock); ++t) {
        const T* xr = px + t * d;
        const T* dyr = pdy + t * d;
        const T r = pr[t];
        double dot = 0.0;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < d; ++j) dot += static_cast<double>(dyr[j]) * pw[j] * xr[j];
        const T c = static_cast<T>(dot / d) * r * r;
        T* dxr = pdx + t * d;
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) {
          dxr[j] = r * (dyr[j] * pw[j] - xr[j] * c);
          acc[j] += static_cast<double>(dyr[j]) * xr[j] * r;
        }
      }
    }
    T* pdw = dw.data<T>();
    for (int64_t j = 0; j < d; ++j) {
      double acc = 0.0;
      for (int64_t b = 0; b < blocks; ++b) acc += partial[b * d + j];
      pdw[j] += static_cast<T>(acc);
    }
  });
}

}  // namespace sb::ops
