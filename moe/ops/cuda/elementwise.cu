// CUDA: elementwise ops, SwiGLU, RoPE and RMSNorm. Grid-stride loops; math in
// f32 whatever the storage dtype (bf16 or f32).
#include <cuda_bf16.h>

#include "moe/ops/cuda/check_cuda.h"
#include "moe/ops/cuda/cuda_ops.h"

namespace sb::cuda {
namespace {

__device__ inline float Load(const float* p, int64_t i) { return p[i]; }
__device__ inline float Load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ inline void Store(float* p, int64_t i, float v) { p[i] = v; }
__device__ inline void Store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }

int Blocks(int64_t n) { return static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535)); }

// Runs f.template operator()<T>() with T = float or __nv_bfloat16.
template <typename F>
void ByDType(DType dtype, F&& f) {
  if (dtype == DType::kF32) {
    f(static_cast<float*>(nullptr));
  } else if (dtype == DType::kBF16) {
    f(static_cast<__nv_bfloat16*>(nullptr));
  } else {
    SB_CHECK(false) << "CUDA op on dtype " << DTypeName(dtype);
  }
}

template <typename T>
__global__ void FillKernel(T* x, int64_t n, float v) {
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) Store(x, i, v);
}
template <typename T>
__global__ void AddKernel(const T* a, const T* b, T* o, int64_t n) {
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    Store(o, i, Load(a, i) + Load(b, i));
}
template <typename T>
__global__ void AxpyKernel(float alpha, const T* x, T* y, int64_t n) {
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    Store(y, i, Load(y, i) + alpha * Load(x, i));
}
template <typename T>
__global__ void ScaleKernel(T* x, float alpha, int64_t n) {
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    Store(x, i, alpha * Load(x, i));
}
template <typename T>
__global__ void SumSquaresKernel(const T* x, int64_t n, double* out) {
  __shared__ double partial[256];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const double v = Load(x, i);
    acc += v * v;
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(out, partial[0]);
}
template <typename T>
__global__ void SwigluKernel(const T* g, const T* u, T* o, int64_t n) {
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float x = Load(g, i);
    Store(o, i, x / (1.f + __expf(-x)) * Load(u, i));
  }
}
template <typename T>
__global__ void SwigluBackwardKernel(const T* g, const T* u, const T* d, T* dg, T* du, int64_t n) {
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float x = Load(g, i), up = Load(u, i), dy = Load(d, i);
    const float s = 1.f / (1.f + __expf(-x));
    Store(du, i, dy * x * s);
    Store(dg, i, dy * up * s * (1.f + x * (1.f - s)));
  }
}
// One thread per (token, head, i < hd/2) pair.
template <typename T>
__global__ void RopeKernel(T* x, const T* cos, const T* sin, int64_t rows, int64_t heads,
                           int64_t half, int seq_len, float sign) {
  const int64_t n = rows * heads * half;
  for (int64_t idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
    const int64_t i = idx % half, h = (idx / half) % heads, t = idx / (half * heads);
    const int64_t pos = t % seq_len;
    const float c = Load(cos, pos * half + i), s = sign * Load(sin, pos * half + i);
    T* v = x + (t * heads + h) * 2 * half;
    const float x1 = Load(v, i), x2 = Load(v, i + half);
    Store(v, i, x1 * c - x2 * s);
    Store(v, i + half, x2 * c + x1 * s);
  }
}
// One block per row; rstd kept in the tensor's dtype (f32 recommended).
template <typename T>
__global__ void RmsNormKernel(const T* x, const T* w, T* y, T* rstd, int64_t d, float eps) {
  __shared__ float partial[256];
  const T* xr = x + blockIdx.x * d;
  float acc = 0.f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) acc += Load(xr, j) * Load(xr, j);
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float r = rsqrtf(partial[0] / d + eps);
  if (threadIdx.x == 0) Store(rstd, blockIdx.x, r);
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) Store(y + blockIdx.x * d, j, Load(xr, j) * r * Load(w, j));
}
template <typename T>
__global__ void RmsNormBackwardKernel(const T* x, const T* w, const T* rstd, const T* dy, T* dx,
                                      float* dw_acc, int64_t d) {
  __shared__ float partial[256];
  const T* xr = x + blockIdx.x * d;
  const T* dyr = dy + blockIdx.x * d;
  const float r = Load(rstd, blockIdx.x);
  float acc = 0.f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) acc += Load(dyr, j) * Load(w, j) * Load(xr, j);
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float c = partial[0] / d * r * r;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    Store(dx + blockIdx.x * d, j, r * (Load(dyr, j) * Load(w, j) - Load(xr, j) * c));
    atomicAdd(dw_acc + j, Load(dyr, j) * Load(xr, j) * r);
  }
}
template <typename T>
__global__ void AddF32Kernel(const float* src, T* dst, int64_t n) {
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    Store(dst, i, Load(dst, i) + src[i]);
}

}  // namespace

void Fill(const Tensor& x, double value) {
  const int64_t n = x.numel();
  ByDType(x.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    FillKernel<<<Blocks(n), 256>>>(static_cast<T*>(x.raw()), n, static_cast<float>(value));
  });
  SB_CUDA_CHECK(cudaGetLastError());
}

void Add(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  ByDType(out.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    AddKernel<<<Blocks(n), 256>>>(static_cast<const T*>(a.raw()), static_cast<const T*>(b.raw()),
                                  static_cast<T*>(out.raw()), n);
  });
  SB_CUDA_CHECK(cudaGetLastError());
}

void Axpy(double alpha, const Tensor& x, const Tensor& y) {
  const int64_t n = y.numel();
  ByDType(y.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    AxpyKernel<<<Blocks(n), 256>>>(static_cast<float>(alpha), static_cast<const T*>(x.raw()),
                                   static_cast<T*>(y.raw()), n);
  });
  SB_CUDA_CHECK(cudaGetLastError());
}

void Scale(const Tensor& x, double alpha) {
  const int64_t n = x.numel();
  ByDType(x.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    ScaleKernel<<<Blocks(n), 256>>>(static_cast<T*>(x.raw()), static_cast<float>(alpha), n);
  });
  SB_CUDA_CHECK(cudaGetLastError());
}

double SumSquares(const Tensor& x) {
  double* d_out = nullptr;
  SB_CUDA_CHECK(cudaMalloc(&d_out, sizeof(double)));
  SB_CUDA_CHECK(cudaMemset(d_out, 0, sizeof(double)));
  const int64_t n = x.numel();
  ByDType(x.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    SumSquaresKernel<<<Blocks(n), 256>>>(static_cast<const T*>(x.raw()), n, d_out);
  });
  SB_CUDA_CHECK(cudaGetLastError());
  double out = 0.0;
  SB_CUDA_CHECK(cudaMemcpy(&out, d_out, sizeof(double), cudaMemcpyDeviceToHost));
  SB_CUDA_CHECK(cudaFree(d_out));
  return out;
}

void SwigluForward(const Tensor& gate, const Tensor& up, const Tensor& out) {
  const int64_t n = out.numel();
  ByDType(out.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    SwigluKernel<<<Blocks(n), 256>>>(static_cast<const T*>(gate.raw()),
                                     static_cast<const T*>(up.raw()), static_cast<T*>(out.raw()), n);
  });
  SB_CUDA_CHECK(cudaGetLastError());
}

void SwigluBackward(const Tensor& gate, const Tensor& up, const Tensor& dout, const Tensor& dgate,
                    const Tensor& dup) {
  const int64_t n = gate.numel();
  ByDType(gate.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    SwigluBackwardKernel<<<Blocks(n), 256>>>(
        static_cast<const T*>(gate.raw()), static_cast<const T*>(up.raw()),
        static_cast<const T*>(dout.raw()), static_cast<T*>(dgate.raw()), static_cast<T*>(dup.raw()), n);
  });
  SB_CUDA_CHECK(cudaGetLastError());
}

void Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int seq_len, bool inverse) {
  const int64_t rows = x.dim(0), half = cos.dim(1), heads = x.dim(1) / (2 * half);
  SB_CHECK(x.dtype() == cos.dtype()) << "Rope tables must match x's dtype";
  ByDType(x.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    RopeKernel<<<Blocks(rows * heads * half), 256>>>(
        static_cast<T*>(x.raw()), static_cast<const T*>(cos.raw()), static_cast<const T*>(sin.raw()),
        rows, heads, half, seq_len, inverse ? -1.f : 1.f);
  });
  SB_CUDA_CHECK(cudaGetLastError());
}

void RmsNormForward(const Tensor& x, const Tensor& w, double eps, const Tensor& y, const Tensor& rstd) {
  const int64_t rows = x.dim(0), d = x.dim(1);
  ByDType(x.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    RmsNormKernel<<<static_cast<unsigned>(rows), 256>>>(
        static_cast<const T*>(x.raw()), static_cast<const T*>(w.raw()), static_cast<T*>(y.raw()),
        static_cast<T*>(rstd.raw()), d, static_cast<float>(eps));
  });
  SB_CUDA_CHECK(cudaGetLastError());
}

void RmsNormBackward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                     const Tensor& dx, const Tensor& dw) {
  const int64_t rows = x.dim(0), d = x.dim(1);
  // dw accumulates in an f32 scratch row, then adds into dw's dtype.
  float* dw_acc = nullptr;
  SB_CUDA_CHECK(cudaMalloc(&dw_acc, d * sizeof(float)));
  SB_CUDA_CHECK(cudaMemset(dw_acc, 0, d * sizeof(float)));
  ByDType(x.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    RmsNormBackwardKernel<<<static_cast<unsigned>(rows), 256>>>(
        static_cast<const T*>(x.raw()), static_cast<const T*>(w.raw()),
        static_cast<const T*>(rstd.raw()), static_cast<const T*>(dy.raw()),
        static_cast<T*>(dx.raw()), dw_acc, d);
  });
  ByDType(dw.dtype(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    AddF32Kernel<<<Blocks(d), 256>>>(dw_acc, static_cast<T*>(dw.raw()), d);
  });
  SB_CUDA_CHECK(cudaGetLastError());
  SB_CUDA_CHECK(cudaFree(dw_acc));
}

}  // namespace sb::cuda
