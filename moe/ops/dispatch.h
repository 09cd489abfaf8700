// Device and dtype dispatch for the op implementations. This header and
// moe/core/device_memory.cc are the only places that test SB_CUDA.
#pragma once

#include "moe/core/check.h"
#include "moe/core/tensor.h"

#if SB_CUDA
#include "moe/ops/cuda/cuda_ops.h"
// Runs the CUDA twin when the tensor lives on the GPU.
#define SB_ON_CUDA(t, fn, ...) \
  if ((t).device() == ::sb::Device::kCuda) return ::sb::cuda::fn(__VA_ARGS__)
// Calls the CUDA twin (the caller has checked that t is on the GPU).
#define SB_CALL_CUDA(t, fn, ...) ::sb::cuda::fn(__VA_ARGS__)
#else
#define SB_ON_CUDA(t, fn, ...) SB_CPU_ONLY(t, fn)
#define SB_CALL_CUDA(t, fn, ...) SB_CPU_ONLY(t, fn)
#endif

// For ops that have no CUDA implementation yet: fail loudly, never silently.
#define SB_CPU_ONLY(t, fn)                                            \
  SB_CHECK((t).device() == ::sb::Device::kCpu)                        \
      << #fn " has no CUDA implementation yet (tensor " << (t).ToString() << ")"

namespace sb::ops {

// ForFloat(dtype, [&](auto tag) { using T = decltype(tag); ... }): runs the
// body with T = float or double (a lambda, not a macro, so OpenMP pragmas work).
template <typename F>
void ForFloat(DType dtype, F&& body) {
  if (dtype == DType::kF32) {
    body(float{});
  } else if (dtype == DType::kF64) {
    body(double{});
  } else {
    SB_CHECK(false) << "CPU float op on dtype " << DTypeName(dtype);
  }
}

// Checks that every tensor has the dtype and device of the first.
inline void CheckSame(const Tensor& a, const Tensor& b, const char* what) {
  SB_CHECK(a.dtype() == b.dtype() && a.device() == b.device())
      << what << ": " << a.ToString() << " vs " << b.ToString();
}
inline void CheckShape(const Tensor& t, const Shape& shape, const char* what) {
  SB_CHECK(t.shape() == shape) << what << ": got " << t.ToString() << ", want "
                               << ShapeToString(shape);
}
}  // namespace sb::ops
