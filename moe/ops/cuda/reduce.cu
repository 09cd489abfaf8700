// CUDA: sums of squares (the gradient norm), finiteness, and the shared
// finishing kernel of DeviceSum. Fixed grids and trees: deterministic.
#include "moe/ops/cuda/cuda_common.cuh"
#include "moe/ops/cuda/cuda_ops.h"

namespace sb::cuda {

__global__ void FinishSumKernel(const double* partial, double* out, int accumulate) {
  __shared__ double scratch[kThreads];
  double acc = 0.0;
  for (int i = threadIdx.x; i < kSumBlocks; i += blockDim.x) acc += partial[i];
  const double total = BlockSum(acc, scratch);
  if (threadIdx.x == 0) *out = accumulate ? *out + total : total;
}

double ReadDouble(const double* device_value) {
  double v = 0.0;
  SB_CUDA_CHECK(cudaMemcpy(&v, device_value, sizeof(double), cudaMemcpyDeviceToHost));
  return v;
}

namespace {

template <typename T>
struct SquareOf {
  const T* x;
  __device__ double operator()(int64_t i) const {
    const double v = Load(x, i);
    return v * v;
  }
};

template <typename T>
struct NonFinite {
  const T* x;
  __device__ double operator()(int64_t i) const { return isfinite(Load(x, i)) ? 0.0 : 1.0; }
};

// Adds the sum of squares of x into *out (device).
void AddSumSquares(const Tensor& x, double* out, bool accumulate) {
  CheckCuda(x, "SumSquares");
  ByDType(x.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    DeviceSum(x.numel(), SquareOf<T>{Ptr<const T>(x)}, out, accumulate);
  });
}

}  // namespace

double SumSquares(const Tensor& x) {
  Tensor out = Tensor::Empty({1}, DType::kF64, Device::kCuda);
  AddSumSquares(x, Ptr<double>(out), false);
  return ReadDouble(Ptr<const double>(out));
}

double SumSquaresOfAll(const std::vector<Tensor>& xs) {
  // Tensors in order, each one's sum added to the running total on the
  // device: one read at the end.
  Tensor out = Tensor::Zeros({1}, DType::kF64, Device::kCuda);
  for (const Tensor& x : xs) AddSumSquares(x, Ptr<double>(out), true);
  return ReadDouble(Ptr<const double>(out));
}

bool AllFinite(const Tensor& x) {
  CheckCuda(x, "AllFinite");
  Tensor out = Tensor::Empty({1}, DType::kF64, Device::kCuda);
  ByDType(x.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    DeviceSum(x.numel(), NonFinite<T>{Ptr<const T>(x)}, Ptr<double>(out));
  });
  return ReadDouble(Ptr<const double>(out)) == 0.0;
}

}  // namespace sb::cuda
