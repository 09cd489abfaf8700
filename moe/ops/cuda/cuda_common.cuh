// Shared pieces of the CUDA kernels: f32/bf16 loads and stores (math is f32
// whatever the storage), launch sizes, dtype dispatch, and deterministic
// reductions (fixed grids and fixed reduction trees: the same bits on every
// run, which bitwise resume needs; no floating-point atomics anywhere).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "moe/core/tensor.h"
#include "moe/ops/cuda/check_cuda.h"

namespace sb::cuda {

// Every kernel runs on the legacy default stream (device_memory.cc's pool
// allocates on it too), so stream order alone orders everything.
constexpr cudaStream_t kStream = nullptr;
constexpr int kThreads = 256;

__device__ __forceinline__ float Load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void Store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16(v);  // round to nearest even, as ops::Convert on the CPU
}

// Blocks for a grid-stride loop over n elements.
inline int Blocks(int64_t n, int threads = kThreads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 65535)));
}

// Runs f(static_cast<T*>(nullptr)) with T = float or __nv_bfloat16.
template <typename F>
void ByDType(DType dtype, F&& f) {
  if (dtype == DType::kF32) {
    f(static_cast<float*>(nullptr));
  } else if (dtype == DType::kBF16) {
    f(static_cast<__nv_bfloat16*>(nullptr));
  } else {
    SB_CHECK(false) << "CUDA op on dtype " << DTypeName(dtype) << " (f32 or bf16 only)";
  }
}
#define SB_TYPE_OF(tag) std::remove_pointer_t<decltype(tag)>

template <typename T>
T* Ptr(const Tensor& t) {
  return static_cast<T*>(t.raw());
}

inline void CheckCuda(const Tensor& t, const char* what) {
  SB_CHECK(t.device() == Device::kCuda) << what << ": " << t.ToString() << " is not on the GPU";
}

inline void CheckLaunch() { SB_CUDA_CHECK(cudaGetLastError()); }

// Block-wide sum with a fixed tree (blockDim.x a power of two <= 1024);
// every thread gets the result. `scratch` holds blockDim.x values.
template <typename A>
__device__ A BlockSum(A v, A* scratch) {
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) scratch[threadIdx.x] += scratch[threadIdx.x + s];
    __syncthreads();
  }
  const A total = scratch[0];
  __syncthreads();
  return total;
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) scratch[threadIdx.x] = fmaxf(scratch[threadIdx.x], scratch[threadIdx.x + s]);
    __syncthreads();
  }
  const float m = scratch[0];
  __syncthreads();
  return m;
}

// Deterministic sum of n terms f(i) in f64: kSumBlocks fixed blocks each sum
// a grid-stride share in order, then one block adds the partials with a
// fixed tree. The result lands in *out (device).
constexpr int kSumBlocks = 512;

template <typename F>
__global__ void PartialSumKernel(int64_t n, F f, double* partial) {
  __shared__ double scratch[kThreads];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    acc += f(i);
  }
  const double total = BlockSum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// out[slot] = sum of partial[slot * kSumBlocks .. + kSumBlocks), one block per slot.
__global__ void FinishSumKernel(const double* partial, double* out, int accumulate);

// Sums f(0..n) into *out (overwrite, or += with accumulate) on the device.
template <typename F>
void DeviceSum(int64_t n, F f, double* out, bool accumulate = false) {
  Tensor partial = Tensor::Empty({kSumBlocks}, DType::kF64, Device::kCuda);
  PartialSumKernel<<<kSumBlocks, kThreads, 0, kStream>>>(n, f, Ptr<double>(partial));
  FinishSumKernel<<<1, kThreads, 0, kStream>>>(Ptr<double>(partial), out, accumulate ? 1 : 0);
  CheckLaunch();
}

// Column sums of a [rows, cols] function f(r, c), in a fixed order: chunks
// of kColumnChunk rows summed per column, then the chunks added in order.
// out[c] = sum_r f(r, c) (+= with accumulate), stored as O (float or double).
constexpr int64_t kColumnChunk = 128;

template <typename F>
__global__ void ColumnPartialKernel(int64_t rows, int64_t cols, F f, double* partial) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  if (c >= cols) return;
  int64_t r1 = (chunk + 1) * kColumnChunk;
  if (r1 > rows) r1 = rows;
  double acc = 0.0;
  for (int64_t r = chunk * kColumnChunk; r < r1; ++r) acc += f(r, c);
  partial[chunk * cols + c] = acc;
}

template <typename O>
__global__ void ColumnFinishKernel(const double* partial, int64_t chunks, int64_t cols, O* out,
                                   int accumulate) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= cols) return;
  double acc = 0.0;
  for (int64_t k = 0; k < chunks; ++k) acc += partial[k * cols + c];
  out[c] = static_cast<O>(accumulate ? static_cast<double>(out[c]) + acc : acc);
}

template <typename F, typename O>
void ColumnSums(int64_t rows, int64_t cols, F f, O* out, bool accumulate) {
  if (cols == 0) return;
  const int64_t chunks = std::max<int64_t>(1, (rows + kColumnChunk - 1) / kColumnChunk);
  SB_CHECK_LE(chunks, 65535) << "ColumnSums over " << rows << " rows";
  Tensor partial = Tensor::Empty({chunks * cols}, DType::kF64, Device::kCuda);
  const dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
  if (rows > 0) {
    ColumnPartialKernel<<<grid, kThreads, 0, kStream>>>(rows, cols, f, Ptr<double>(partial));
  } else {
    SB_CUDA_CHECK(cudaMemsetAsync(partial.raw(), 0, partial.nbytes(), kStream));
  }
  ColumnFinishKernel<<<Blocks(cols), kThreads, 0, kStream>>>(Ptr<double>(partial), chunks, cols,
                                                              out, accumulate ? 1 : 0);
  CheckLaunch();
}

// Reads one f64 from the device (waits for the work queued before it).
double ReadDouble(const double* device_value);

}  // namespace sb::cuda
