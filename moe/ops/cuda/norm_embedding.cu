// CUDA: RMSNorm forward/backward and the embedding lookup. RMSNorm's
// statistics (rstd) and its weight gradient are f32; the weight gradient is
// a fixed-order column sum (no atomics). The embedding's backward is the
// deterministic ScatterAddRows (rows.cu).
#include "moe/ops/cuda/cuda_common.cuh"
#include "moe/ops/cuda/cuda_ops.h"

namespace sb::cuda {
namespace {

// One block per row: y = x * rstd * w.
template <typename T, typename W>
__global__ void RmsNormKernel(const T* x, const W* w, T* y, float* rstd, int64_t d, float eps) {
  __shared__ float scratch[kThreads];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  float acc = 0.f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const float v = Load(xr, j);
    acc += v * v;
  }
  const float r = rsqrtf(BlockSum(acc, scratch) / static_cast<float>(d) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) Store(y + row * d, j, Load(xr, j) * r * Load(w, j));
}

// One block per row: dx = r (dy w - x r^2 mean(dy w x)).
template <typename T, typename W>
__global__ void RmsNormBackwardKernel(const T* x, const W* w, const float* rstd, const T* dy, T* dx,
                                      int64_t d) {
  __shared__ float scratch[kThreads];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  const T* dyr = dy + row * d;
  const float r = rstd[row];
  float acc = 0.f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) acc += Load(dyr, j) * Load(w, j) * Load(xr, j);
  const float c = BlockSum(acc, scratch) / static_cast<float>(d) * r * r;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    Store(dx + row * d, j, r * (Load(dyr, j) * Load(w, j) - Load(xr, j) * c));
  }
}

// dw[j] terms: dy[t, j] x[t, j] rstd[t].
template <typename T>
struct NormWeightGrad {
  const T* x;
  const T* dy;
  const float* rstd;
  int64_t d;
  __device__ double operator()(int64_t t, int64_t j) const {
    return static_cast<double>(Load(dy, t * d + j)) * Load(x, t * d + j) * rstd[t];
  }
};

template <typename T>
__global__ void EmbeddingKernel(const int32_t* ids, const T* table, T* out, int64_t rows, int64_t d) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * d;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / d, j = i % d;
    out[i] = table[static_cast<int64_t>(ids[t]) * d + j];
  }
}

}  // namespace

void RmsNormForward(const Tensor& x, const Tensor& w, double eps, const Tensor& y, const Tensor& rstd) {
  SB_CHECK(rstd.dtype() == DType::kF32 && rstd.numel() == x.dim(0) && y.dtype() == x.dtype() &&
           w.numel() == x.dim(1))
      << "RmsNormForward x " << x.ToString() << " w " << w.ToString() << " y " << y.ToString()
      << " rstd " << rstd.ToString() << " (rstd is f32 on the GPU)";
  const int64_t rows = x.dim(0), d = x.dim(1);
  if (rows == 0) return;
  ByDType(x.dtype(), [&](auto xtag) {
    using T = SB_TYPE_OF(xtag);
    ByDType(w.dtype(), [&](auto wtag) {
      using W = SB_TYPE_OF(wtag);
      RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, kStream>>>(
          Ptr<const T>(x), Ptr<const W>(w), Ptr<T>(y), Ptr<float>(rstd), d, static_cast<float>(eps));
    });
  });
  CheckLaunch();
}

void RmsNormBackward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                     const Tensor& dx, const Tensor& dw) {
  SB_CHECK(rstd.dtype() == DType::kF32 && dw.dtype() == DType::kF32 && dy.dtype() == x.dtype() &&
           dx.dtype() == x.dtype())
      << "RmsNormBackward x " << x.ToString() << " dw " << dw.ToString() << " rstd "
      << rstd.ToString() << " (rstd and dw are f32 on the GPU)";
  const int64_t rows = x.dim(0), d = x.dim(1);
  if (rows == 0) return;
  ByDType(x.dtype(), [&](auto xtag) {
    using T = SB_TYPE_OF(xtag);
    ByDType(w.dtype(), [&](auto wtag) {
      using W = SB_TYPE_OF(wtag);
      RmsNormBackwardKernel<<<static_cast<unsigned>(rows), kThreads, 0, kStream>>>(
          Ptr<const T>(x), Ptr<const W>(w), Ptr<const float>(rstd), Ptr<const T>(dy), Ptr<T>(dx), d);
    });
    ColumnSums(rows, d, NormWeightGrad<T>{Ptr<const T>(x), Ptr<const T>(dy), Ptr<const float>(rstd), d},
               Ptr<float>(dw), /*accumulate=*/true);
  });
  CheckLaunch();
}

void EmbeddingForward(const Tensor& ids, const Tensor& table, const Tensor& out) {
  SB_CHECK(ids.dtype() == DType::kI32 && ids.device() == Device::kCuda && out.dtype() == table.dtype() &&
           out.dim(0) == ids.numel() && out.dim(1) == table.dim(1))
      << "EmbeddingForward ids " << ids.ToString() << " table " << table.ToString() << " out "
      << out.ToString();
  const int64_t rows = ids.numel(), d = table.dim(1);
  if (rows == 0) return;
  ByDType(table.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    EmbeddingKernel<<<Blocks(rows * d), kThreads, 0, kStream>>>(Ptr<const int32_t>(ids),
                                                                Ptr<const T>(table), Ptr<T>(out), rows, d);
  });
  CheckLaunch();
}

void EmbeddingBackward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) {
  // dtable[ids[t]] += dout[t]: a scatter-add whose rows repeat.
  ScatterAddRows(dout, ids, dtable, nullptr);
}

}  // namespace sb::cuda
