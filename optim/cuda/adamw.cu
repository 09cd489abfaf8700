// CUDA: AdamW's element update (formulas and sources: optim/adamw.h), the
// same arithmetic as the CPU loop in f32, one thread per element.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "moe/core/check.h"
#include "optim/device_updates.h"

namespace sb::cuda {
namespace {

__global__ void AdamWKernel(int64_t n, float* p, const float* g, float* m, float* v,
                            float decay, float w1, float b2, float w2, float step_size,
                            float bc2_sqrt, float eps, bool lerp_from_m) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float gi = g[i];
    float pi = p[i] * decay;
    // PyTorch's lerp(m, g, w) picks its form by w to keep the rounding small.
    const float mi = lerp_from_m ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * (1.f - w1);
    const float vi = v[i] * b2 + w2 * gi * gi;
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    pi -= step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
  }
}

}  // namespace

void AdamWUpdate(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                 const AdamWScalars& s) {
  for (const Tensor* t : {&p, &g, &m, &v}) {
    SB_CHECK(t->dtype() == DType::kF32 && t->device() == Device::kCuda && t->numel() == p.numel())
        << "AdamW on the GPU updates f32 device tensors, got " << t->ToString();
  }
  const int64_t n = p.numel();
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535));
  AdamWKernel<<<blocks, 256>>>(n, static_cast<float*>(p.raw()), static_cast<const float*>(g.raw()),
                               static_cast<float*>(m.raw()), static_cast<float*>(v.raw()),
                               static_cast<float>(s.decay_factor), static_cast<float>(s.one_minus_b1),
                               static_cast<float>(s.beta2), static_cast<float>(s.one_minus_b2),
                               static_cast<float>(s.step_size), static_cast<float>(s.bc2_sqrt),
                               static_cast<float>(s.eps), s.one_minus_b1 < 0.5 && s.one_minus_b1 > -0.5);
  const cudaError_t err = cudaGetLastError();
  SB_CHECK(err == cudaSuccess) << cudaGetErrorString(err);
}

}  // namespace sb::cuda
