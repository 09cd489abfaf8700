// CUDA: causal GQA attention. bf16 runs cuDNN's fused attention
// (attention_cudnn.cc); f32 runs the own reference kernels below, one
// thread per query or key (moe/ops/kernels/attention_reference.h, whose
// per-thread code a CPU test checks).
#include <cmath>

#include "moe/ops/attention_sizes.h"
#include "moe/ops/cuda/cuda_common.cuh"
#include "moe/ops/cuda/cuda_ops.h"
#include "moe/ops/kernels/attention_reference.h"

namespace sb::cuda {
namespace {

using ops::kernels::AttentionLayout;

__global__ void ForwardKernel(AttentionLayout L, const float* q, const float* k, const float* v,
                              float* out, float* lse) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < L.B * L.H * L.S;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = idx % L.S, h = (idx / L.S) % L.H, b = idx / (L.S * L.H);
    ops::kernels::ReferenceAttentionQuery(L, q, k, v, b, h, i, out, lse);
  }
}

__global__ void DqKernel(AttentionLayout L, const float* q, const float* k, const float* v,
                         const float* out, const float* lse, const float* dout, float* dq) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < L.B * L.H * L.S;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = idx % L.S, h = (idx / L.S) % L.H, b = idx / (L.S * L.H);
    ops::kernels::ReferenceAttentionDq(L, q, k, v, out, lse, dout, b, h, i, dq);
  }
}

__global__ void DkvKernel(AttentionLayout L, const float* q, const float* k, const float* v,
                          const float* out, const float* lse, const float* dout, float* dk, float* dv) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < L.B * L.Hkv * L.S;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = idx % L.S, kvh = (idx / L.S) % L.Hkv, b = idx / (L.S * L.Hkv);
    ops::kernels::ReferenceAttentionDkv(L, q, k, v, out, lse, dout, b, kvh, j, dk, dv);
  }
}

constexpr int kAttentionThreads = 128;

AttentionLayout Layout(const Tensor& q, const Tensor& k, const Tensor& lse, int seq_len) {
  const ops::AttentionSizes s = ops::AttentionSizesOf(q, k, lse, seq_len);
  SB_CHECK(lse.dtype() == DType::kF32) << "attention lse is f32 on the GPU, got " << lse.ToString();
  return AttentionLayout{s.B, s.S, s.H, s.Hkv, s.hd,
                         static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.hd)))};
}

void CheckReference(const AttentionLayout& L, std::initializer_list<const Tensor*> ts) {
  SB_CHECK(L.hd <= ops::kernels::kMaxReferenceHeadDim)
      << "the reference attention kernel handles head dims up to "
      << ops::kernels::kMaxReferenceHeadDim << ", got " << L.hd;
  for (const Tensor* t : ts) {
    SB_CHECK(t->dtype() == DType::kF32 && t->device() == Device::kCuda)
        << "the reference attention kernel runs f32 on the GPU, got " << t->ToString();
  }
}

}  // namespace

void ReferenceAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                               const Tensor& lse, const Tensor& out) {
  const AttentionLayout L = Layout(q, k, lse, seq_len);
  CheckReference(L, {&q, &k, &v, &out});
  if (L.B * L.H * L.S == 0) return;
  ForwardKernel<<<Blocks(L.B * L.H * L.S, kAttentionThreads), kAttentionThreads, 0, kStream>>>(
      L, Ptr<const float>(q), Ptr<const float>(k), Ptr<const float>(v), Ptr<float>(out), Ptr<float>(lse));
  CheckLaunch();
}

void ReferenceAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                const Tensor& lse, const Tensor& dout, int seq_len, const Tensor& dq,
                                const Tensor& dk, const Tensor& dv) {
  const AttentionLayout L = Layout(q, k, lse, seq_len);
  CheckReference(L, {&q, &k, &v, &out, &dout, &dq, &dk, &dv});
  if (L.B * L.H * L.S == 0) return;
  DqKernel<<<Blocks(L.B * L.H * L.S, kAttentionThreads), kAttentionThreads, 0, kStream>>>(
      L, Ptr<const float>(q), Ptr<const float>(k), Ptr<const float>(v), Ptr<const float>(out),
      Ptr<const float>(lse), Ptr<const float>(dout), Ptr<float>(dq));
  DkvKernel<<<Blocks(L.B * L.Hkv * L.S, kAttentionThreads), kAttentionThreads, 0, kStream>>>(
      L, Ptr<const float>(q), Ptr<const float>(k), Ptr<const float>(v), Ptr<const float>(out),
      Ptr<const float>(lse), Ptr<const float>(dout), Ptr<float>(dk), Ptr<float>(dv));
  CheckLaunch();
}

void CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                            const Tensor& lse, const Tensor& out) {
  if (q.dtype() == DType::kBF16) {
    CudnnAttentionForward(q, k, v, seq_len, lse, out);
  } else {
    ReferenceAttentionForward(q, k, v, seq_len, lse, out);
  }
}

void CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const Tensor& lse, const Tensor& dout, int seq_len, const Tensor& dq,
                             const Tensor& dk, const Tensor& dv) {
  if (q.dtype() == DType::kBF16) {
    CudnnAttentionBackward(q, k, v, out, lse, dout, seq_len, dq, dk, dv);
  } else {
    ReferenceAttentionBackward(q, k, v, out, lse, dout, seq_len, dq, dk, dv);
  }
}

}  // namespace sb::cuda
