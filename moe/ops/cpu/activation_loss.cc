// CPU reference: SwiGLU, row softmax and the LM head fused with its
// cross-entropy over chunks of tokens.
#include <algorithm>
#include <cmath>
#include <limits>

#include "moe/ops/cpu/fast_math.h"
#include "moe/ops/dispatch.h"
#include "moe/ops/ops.h"

namespace sb::ops {

namespace {
// FastExp: vectorisable (fast_math.h); f64 keeps std::exp. For gate values
// below -88, exp(-x) saturates at exp(88) and silu(x) ~ x * 6e-39 instead of
// a smaller denormal: zero for every purpose.
template <typename T>
T Sigmoid(T x) {
  return T(1) / (T(1) + FastExp(-x));
}
}  // namespace

void SwigluForward(const Tensor& gate, const Tensor& up, const Tensor& out) {
  SB_ON_CUDA(out, SwigluForward, gate, up, out);
  CheckSame(gate, up, "SwigluForward");
  CheckSame(gate, out, "SwigluForward");
  const int64_t n = gate.numel();
  SB_CHECK(up.numel() == n && out.numel() == n) << "SwigluForward sizes";
  ForFloat(gate.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* g = gate.data<T>();
    const T* u = up.data<T>();
    T* o = out.data<T>();
#pragma omp parallel for simd schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; ++i) o[i] = g[i] * Sigmoid(g[i]) * u[i];
  });
}

void SwigluBackward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                    const Tensor& dgate, const Tensor& dup) {
  SB_ON_CUDA(dgate, SwigluBackward, gate, up, dout, dgate, dup);
  CheckSame(gate, dout, "SwigluBackward");
  const int64_t n = gate.numel();
  ForFloat(gate.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* g = gate.data<T>();
    const T* u = up.data<T>();
    const T* d = dout.data<T>();
    T* dg = dgate.data<T>();
    T* du = dup.data<T>();
    // silu'(g) = s (1 + g (1 - s)), s = sigmoid(g)
#pragma omp parallel for simd schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; ++i) {
      // dout may alias dup: read everything before writing.
      const T s = Sigmoid(g[i]), dy = d[i], gi = g[i], ui = u[i];
      du[i] = dy * gi * s;
      dg[i] = dy * ui * s * (T(1) + gi * (T(1) - s));
    }
  });
}

void SoftmaxForward(const Tensor& logits, const Tensor& probs, const Tensor& lse) {
  SB_ON_CUDA(probs, SoftmaxForward, logits, probs, lse);
  CheckSame(logits, probs, "SoftmaxForward");
  CheckSame(logits, lse, "SoftmaxForward");
  const int64_t rows = logits.dim(0), cols = logits.dim(1);
  ForFloat(logits.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* x = logits.data<T>();
    T* p = probs.data<T>();
    T* l = lse.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
    for (int64_t t = 0; t < rows; ++t) {
      const T* xr = x + t * cols;
      T* pr = p + t * cols;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, xr[j]);
      T sum = 0;
      for (int64_t j = 0; j < cols; ++j) sum += (pr[j] = FastExp(xr[j] - mx));
      for (int64_t j = 0; j < cols; ++j) pr[j] /= sum;
      l[t] = mx + std::log(sum);
    }
  });
}

void SoftmaxBackward(const Tensor& probs, const Tensor& dprobs, const Tensor& dlogits) {
  SB_ON_CUDA(dlogits, SoftmaxBackward, probs, dprobs, dlogits);
  CheckSame(probs, dprobs, "SoftmaxBackward");
  CheckSame(probs, dlogits, "SoftmaxBackward");
  const int64_t rows = probs.dim(0), cols = probs.dim(1);
  ForFloat(probs.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = probs.data<T>();
    const T* dp = dprobs.data<T>();
    T* dl = dlogits.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
    for (int64_t t = 0; t < rows; ++t) {
      T dot = 0;
      for (int64_t j = 0; j < cols; ++j) dot += p[t * cols + j] * dp[t * cols + j];
      for (int64_t j = 0; j < cols; ++j) dl[t * cols + j] += p[t * cols + j] * (dp[t * cols + j] - dot);
    }
  });
}

void LmHeadCrossEntropy(const Tensor& hidden, const Tensor& head, const Tensor& targets,
                        int64_t chunk_rows, double grad_scale, const Tensor& losses,
                        const Tensor& dhidden, const Tensor& dhead) {
  SB_ON_CUDA(hidden, LmHeadCrossEntropy, hidden, head, targets, chunk_rows, grad_scale, losses,
             dhidden, dhead);
  CheckSame(hidden, head, "LmHeadCrossEntropy");
  CheckSame(hidden, losses, "LmHeadCrossEntropy");
  const int64_t rows = hidden.dim(0), vocab = head.dim(0);
  SB_CHECK(head.dim(1) == hidden.dim(1) && targets.numel() == rows && losses.numel() == rows)
      << "LmHeadCrossEntropy shapes: hidden " << hidden.ToString() << " head " << head.ToString()
      << " targets " << targets.ToString() << " losses " << losses.ToString();
  const bool grad = dhidden.defined();
  if (grad) {
    CheckSame(hidden, dhidden, "LmHeadCrossEntropy dhidden");
    CheckSame(head, dhead, "LmHeadCrossEntropy dhead");
    CheckShape(dhidden, hidden.shape(), "LmHeadCrossEntropy dhidden");
    CheckShape(dhead, head.shape(), "LmHeadCrossEntropy dhead");
  }
  SB_CHECK_GE(chunk_rows, 1);
  const int32_t* y = targets.data<int32_t>();
  for (int64_t t = 0; t < rows; ++t) {
    SB_CHECK(y[t] < vocab) << "target " << y[t] << " outside vocab " << vocab;
  }
  // One chunk's logits, reused across calls (grows once).
  thread_local ScratchTensor chunk_buffer;
  for (int64_t c0 = 0; c0 < rows; c0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, rows - c0);
    const Tensor logits = chunk_buffer.Get({n, vocab}, hidden.dtype(), Device::kCpu);
    const Tensor h = hidden.Rows(c0, c0 + n);
    Gemm(h, false, head, true, logits);
    ForFloat(hidden.dtype(), [&](auto tag_) {
      using T = decltype(tag_);
      T* x = logits.data<T>();
      T* loss = losses.data<T>() + c0;
      const int32_t* yc = y + c0;
      const T s = static_cast<T>(grad_scale);
#pragma omp parallel for schedule(static) if (n * vocab > 32768)
      for (int64_t t = 0; t < n; ++t) {
        T* xr = x + t * vocab;
        T mx = xr[0];
#pragma omp simd reduction(max : mx)
        for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, xr[j]);
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < vocab; ++j) sum += FastExp(xr[j] - mx);
        const T lse = mx + std::log(sum);
        const int32_t target = yc[t];
        loss[t] = target < 0 ? T(0) : lse - xr[target];
        if (!grad) continue;
        // The logits row becomes its gradient in place.
        const T st = target < 0 ? T(0) : s;
#pragma omp simd
        for (int64_t j = 0; j < vocab; ++j) xr[j] = st * FastExp(xr[j] - lse);
        if (target >= 0) xr[target] -= st;
      }
    });
    if (grad) {
      Gemm(logits, true, h, false, dhead, 1.0, 1.0);
      Gemm(logits, false, head, false, dhidden.Rows(c0, c0 + n));
    }
  }
}

}  // namespace sb::ops
