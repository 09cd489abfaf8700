// The GPU's reference attention kernels (f32 mode, and the reference for
// cuDNN in cuda_ops_test) run one thread per query or key. Here every
// "thread" runs in a host loop, and the result is checked against the CPU
// op (itself checked against a naive loop and finite differences in
// ops_test), across more than one of the CPU op's query blocks.
#include "moe/ops/kernels/attention_reference.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "moe/ops/ops.h"
#include "tests/testing/grad_check.h"

namespace sb {
namespace {

TEST(AttentionReference, PerThreadCodeMatchesCpuOp) {
  const int64_t B = 2, S = 70, H = 4, Hkv = 2, hd = 8;
  Tensor q = testing::RandomTensor({B * S, H * hd}, 1, 1.0, DType::kF32);
  Tensor k = testing::RandomTensor({B * S, Hkv * hd}, 2, 1.0, DType::kF32);
  Tensor v = testing::RandomTensor({B * S, Hkv * hd}, 3, 1.0, DType::kF32);
  Tensor dout = testing::RandomTensor({B * S, H * hd}, 4, 1.0, DType::kF32);
  Tensor lse = Tensor::Empty({B, H, S}, DType::kF32), out = Tensor::Empty(q.shape(), DType::kF32);
  ops::CausalAttentionForward(q, k, v, static_cast<int>(S), lse, out);
  Tensor dq = Tensor::Empty(q.shape(), DType::kF32), dk = Tensor::Empty(k.shape(), DType::kF32);
  Tensor dv = Tensor::Empty(v.shape(), DType::kF32);
  ops::CausalAttentionBackward(q, k, v, out, lse, dout, static_cast<int>(S), dq, dk, dv);

  ops::kernels::AttentionLayout L{B, S, H, Hkv, hd, static_cast<float>(1.0 / std::sqrt(double(hd)))};
  Tensor r_out = Tensor::Empty(q.shape(), DType::kF32), r_lse = Tensor::Empty(lse.shape(), DType::kF32);
  Tensor r_dq = Tensor::Empty(q.shape(), DType::kF32), r_dk = Tensor::Empty(k.shape(), DType::kF32);
  Tensor r_dv = Tensor::Empty(v.shape(), DType::kF32);
  const float *pq = q.data<float>(), *pk = k.data<float>(), *pv = v.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i)
        ops::kernels::ReferenceAttentionQuery(L, pq, pk, pv, b, h, i, r_out.data<float>(), r_lse.data<float>());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i)
        ops::kernels::ReferenceAttentionDq(L, pq, pk, pv, r_out.data<float>(), r_lse.data<float>(),
                                           dout.data<float>(), b, h, i, r_dq.data<float>());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t kvh = 0; kvh < Hkv; ++kvh)
      for (int64_t j = 0; j < S; ++j)
        ops::kernels::ReferenceAttentionDkv(L, pq, pk, pv, r_out.data<float>(), r_lse.data<float>(),
                                            dout.data<float>(), b, kvh, j, r_dk.data<float>(),
                                            r_dv.data<float>());
  // f32 sums over up to S terms of O(1): a few ulp times sqrt(S) each.
  const double tol = 1e-5 * std::sqrt(static_cast<double>(S));
  SB_EXPECT_TENSOR_NEAR(r_out, out, tol);
  SB_EXPECT_TENSOR_NEAR(r_lse, lse, tol);
  SB_EXPECT_TENSOR_NEAR(r_dq, dq, 4 * tol);
  SB_EXPECT_TENSOR_NEAR(r_dk, dk, 4 * tol * H / Hkv);
  SB_EXPECT_TENSOR_NEAR(r_dv, dv, 4 * tol * H / Hkv);
}

}  // namespace
}  // namespace sb
