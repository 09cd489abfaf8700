// CUDA: fills, adds, scales, dtype conversion, SwiGLU and RoPE. Grid-stride
// loops; math in f32 whatever the storage dtype (bf16 or f32).
#include "moe/ops/cuda/cuda_common.cuh"
#include "moe/ops/cuda/cuda_ops.h"

namespace sb::cuda {
namespace {

#define SB_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); i += int64_t{gridDim.x} * blockDim.x)

template <typename T>
__global__ void FillKernel(T* x, int64_t n, float v) {
  SB_GRID_STRIDE(i, n) Store(x, i, v);
}
template <typename T>
__global__ void AddKernel(const T* a, const T* b, T* o, int64_t n) {
  SB_GRID_STRIDE(i, n) Store(o, i, Load(a, i) + Load(b, i));
}
template <typename T>
__global__ void MulKernel(const T* a, const T* b, T* o, int64_t n) {
  SB_GRID_STRIDE(i, n) Store(o, i, Load(a, i) * Load(b, i));
}
template <typename X, typename Y>
__global__ void AxpyKernel(float alpha, const X* x, Y* y, int64_t n) {
  SB_GRID_STRIDE(i, n) Store(y, i, Load(y, i) + alpha * Load(x, i));
}
template <typename T>
__global__ void ScaleKernel(T* x, float alpha, int64_t n) {
  SB_GRID_STRIDE(i, n) Store(x, i, alpha * Load(x, i));
}
template <typename S, typename D>
__global__ void ConvertKernel(const S* src, D* dst, int64_t n) {
  SB_GRID_STRIDE(i, n) Store(dst, i, Load(src, i));
}
template <typename T>
__global__ void SwigluKernel(const T* g, const T* u, T* o, int64_t n) {
  SB_GRID_STRIDE(i, n) {
    const float x = Load(g, i);
    Store(o, i, x / (1.f + expf(-x)) * Load(u, i));
  }
}
template <typename T>
__global__ void SwigluBackwardKernel(const T* g, const T* u, const T* d, T* dg, T* du, int64_t n) {
  SB_GRID_STRIDE(i, n) {
    // dout may alias dup: read everything before writing.
    const float x = Load(g, i), up = Load(u, i), dy = Load(d, i);
    const float s = 1.f / (1.f + expf(-x));
    Store(du, i, dy * x * s);
    Store(dg, i, dy * up * s * (1.f + x * (1.f - s)));
  }
}
// One thread per (token, head, i < hd/2) pair; tables W (f32 or T).
template <typename T, typename W>
__global__ void RopeKernel(T* x, const W* cos, const W* sin, int64_t rows, int64_t heads,
                           int64_t half, int seq_len, float sign) {
  SB_GRID_STRIDE(idx, rows * heads * half) {
    const int64_t i = idx % half, h = (idx / half) % heads, t = idx / (half * heads);
    const int64_t pos = t % seq_len;
    const float c = Load(cos, pos * half + i), s = sign * Load(sin, pos * half + i);
    T* v = x + (t * heads + h) * 2 * half;
    const float x1 = Load(v, i), x2 = Load(v, i + half);
    Store(v, i, x1 * c - x2 * s);
    Store(v, i + half, x2 * c + x1 * s);
  }
}

void CheckSameDTypeAndSize(const Tensor& a, const Tensor& b, const char* what) {
  SB_CHECK(a.dtype() == b.dtype() && a.numel() == b.numel() && a.device() == b.device())
      << what << ": " << a.ToString() << " vs " << b.ToString();
}

}  // namespace

void Fill(const Tensor& x, double value) {
  const int64_t n = x.numel();
  if (n == 0) return;
  ByDType(x.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    FillKernel<<<Blocks(n), kThreads, 0, kStream>>>(Ptr<T>(x), n, static_cast<float>(value));
  });
  CheckLaunch();
}

void Add(const Tensor& a, const Tensor& b, const Tensor& out) {
  CheckSameDTypeAndSize(a, out, "Add");
  CheckSameDTypeAndSize(b, out, "Add");
  const int64_t n = out.numel();
  if (n == 0) return;
  ByDType(out.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    AddKernel<<<Blocks(n), kThreads, 0, kStream>>>(Ptr<const T>(a), Ptr<const T>(b), Ptr<T>(out), n);
  });
  CheckLaunch();
}

void Mul(const Tensor& a, const Tensor& b, const Tensor& out) {
  CheckSameDTypeAndSize(a, out, "Mul");
  CheckSameDTypeAndSize(b, out, "Mul");
  const int64_t n = out.numel();
  if (n == 0) return;
  ByDType(out.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    MulKernel<<<Blocks(n), kThreads, 0, kStream>>>(Ptr<const T>(a), Ptr<const T>(b), Ptr<T>(out), n);
  });
  CheckLaunch();
}

void Axpy(double alpha, const Tensor& x, const Tensor& y) {
  SB_CHECK(x.numel() == y.numel() && x.device() == y.device())
      << "Axpy " << x.ToString() << " into " << y.ToString();
  const int64_t n = y.numel();
  if (n == 0) return;
  ByDType(x.dtype(), [&](auto xtag) {
    using X = SB_TYPE_OF(xtag);
    ByDType(y.dtype(), [&](auto ytag) {
      using Y = SB_TYPE_OF(ytag);
      AxpyKernel<<<Blocks(n), kThreads, 0, kStream>>>(static_cast<float>(alpha), Ptr<const X>(x),
                                                      Ptr<Y>(y), n);
    });
  });
  CheckLaunch();
}

void Scale(const Tensor& x, double alpha) {
  const int64_t n = x.numel();
  if (n == 0) return;
  ByDType(x.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    ScaleKernel<<<Blocks(n), kThreads, 0, kStream>>>(Ptr<T>(x), static_cast<float>(alpha), n);
  });
  CheckLaunch();
}

void Convert(const Tensor& src, const Tensor& dst) {
  SB_CHECK(src.numel() == dst.numel() && src.device() == dst.device())
      << "Convert " << src.ToString() << " to " << dst.ToString();
  const int64_t n = src.numel();
  if (n == 0) return;
  ByDType(src.dtype(), [&](auto stag) {
    using S = SB_TYPE_OF(stag);
    ByDType(dst.dtype(), [&](auto dtag) {
      using D = SB_TYPE_OF(dtag);
      ConvertKernel<<<Blocks(n), kThreads, 0, kStream>>>(Ptr<const S>(src), Ptr<D>(dst), n);
    });
  });
  CheckLaunch();
}

void SwigluForward(const Tensor& gate, const Tensor& up, const Tensor& out) {
  CheckSameDTypeAndSize(gate, out, "SwigluForward");
  CheckSameDTypeAndSize(up, out, "SwigluForward");
  const int64_t n = out.numel();
  if (n == 0) return;
  ByDType(out.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    SwigluKernel<<<Blocks(n), kThreads, 0, kStream>>>(Ptr<const T>(gate), Ptr<const T>(up),
                                                      Ptr<T>(out), n);
  });
  CheckLaunch();
}

void SwigluBackward(const Tensor& gate, const Tensor& up, const Tensor& dout, const Tensor& dgate,
                    const Tensor& dup) {
  CheckSameDTypeAndSize(gate, dout, "SwigluBackward");
  CheckSameDTypeAndSize(gate, dgate, "SwigluBackward");
  CheckSameDTypeAndSize(gate, dup, "SwigluBackward");
  const int64_t n = gate.numel();
  if (n == 0) return;
  ByDType(gate.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    SwigluBackwardKernel<<<Blocks(n), kThreads, 0, kStream>>>(
        Ptr<const T>(gate), Ptr<const T>(up), Ptr<const T>(dout), Ptr<T>(dgate), Ptr<T>(dup), n);
  });
  CheckLaunch();
}

void Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int seq_len, bool inverse) {
  CheckCuda(cos, "Rope tables");
  SB_CHECK(cos.dtype() == sin.dtype() && cos.shape() == sin.shape() && cos.dim(0) >= seq_len)
      << "Rope tables " << cos.ToString() << " " << sin.ToString();
  const int64_t rows = x.dim(0), half = cos.dim(1), heads = x.dim(1) / (2 * half);
  SB_CHECK_EQ(heads * 2 * half, x.dim(1));
  if (rows * heads * half == 0) return;
  ByDType(x.dtype(), [&](auto xtag) {
    using T = SB_TYPE_OF(xtag);
    ByDType(cos.dtype(), [&](auto wtag) {
      using W = SB_TYPE_OF(wtag);
      RopeKernel<<<Blocks(rows * heads * half), kThreads, 0, kStream>>>(
          Ptr<T>(x), Ptr<const W>(cos), Ptr<const W>(sin), rows, heads, half, seq_len,
          inverse ? -1.f : 1.f);
    });
  });
  CheckLaunch();
}

}  // namespace sb::cuda
