// Helpers of the CUDA op tests: moving CPU tensors to the GPU in a dtype and
// back, and tolerances derived from the dtype. The tests skip (GTEST_SKIP)
// on machines without a GPU or driver, which includes CI.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "moe/core/device_memory.h"
#include "moe/ops/ops.h"
#include "tests/testing/grad_check.h"

namespace sb::cuda_test {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaBuilt()) GTEST_SKIP() << "built without CUDA (SB_CUDA=OFF)";
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device or driver on this machine";
  }
};

// A GPU copy of a CPU tensor: floats converted to `dtype` (f32 or bf16),
// integers as they are.
inline Tensor ToGpu(const Tensor& cpu, DType dtype = DType::kF32) {
  if (!IsFloating(cpu.dtype())) dtype = cpu.dtype();
  Tensor staged = cpu;
  if (cpu.dtype() != dtype) {
    staged = Tensor::Empty(cpu.shape(), dtype);
    ops::Convert(cpu, staged);
  }
  Tensor gpu = Tensor::Empty(cpu.shape(), dtype, Device::kCuda);
  ops::Copy(staged, gpu);
  return gpu;
}

// A CPU f32 (or integer) copy of a GPU tensor.
inline Tensor ToCpu(const Tensor& gpu) {
  Tensor staged = Tensor::Empty(gpu.shape(), gpu.dtype());
  ops::Copy(gpu, staged);
  if (!IsFloating(gpu.dtype()) || gpu.dtype() == DType::kF32) return staged;
  Tensor out = Tensor::Empty(gpu.shape(), DType::kF32);
  ops::Convert(staged, out);
  return out;
}

// A CPU f32 tensor of N(0, std^2) entries from stream `seed`.
inline Tensor R(const Shape& shape, uint64_t seed, double std = 1.0) {
  return testing::RandomTensor(shape, seed, std, DType::kF32);
}

// The CPU f32 tensor rounded through bf16 (the inputs a bf16 op really saw).
inline Tensor RoundedBf16(const Tensor& cpu) { return ToCpu(ToGpu(cpu, DType::kBF16)); }

// Absolute tolerance for a value of magnitude `scale` computed from `terms`
// rounded inputs: bf16 keeps 8 significant bits (relative 2^-8 per
// rounding, growing like sqrt(terms) for independent errors); f32 keeps 24.
inline double Tol(DType dtype, double scale, double terms = 1.0) {
  const double unit = dtype == DType::kBF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -20);
  return 4.0 * unit * scale * std::sqrt(std::max(terms, 1.0));
}

inline bool BitwiseEqual(const Tensor& a, const Tensor& b) {
  const Tensor x = ToCpu(a), y = ToCpu(b);
  return x.nbytes() == y.nbytes() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

}  // namespace sb::cuda_test
