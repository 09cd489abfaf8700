// CUDA twins against their CPU references, in f32 and bf16: elementwise
// ops, reductions, GEMMs (dense, grouped, strided-batched), RMSNorm, RoPE,
// SwiGLU, embedding, attention (the own f32 kernel against the CPU op,
// cuDNN's bf16 attention against the own kernel on the same rounded
// inputs), softmax and the fused LM head cross-entropy. Routing and row
// permutations: cuda_routing_test.cc. Skips without a GPU.
#include <cmath>
#include <vector>

#include "moe/ops/cuda/cuda_test_util.h"
#if SB_CUDA
#include "moe/ops/cuda/cuda_ops.h"
#endif

namespace sb {
namespace {

using cuda_test::BitwiseEqual;
using cuda_test::R;
using cuda_test::RoundedBf16;
using cuda_test::Tol;
using cuda_test::ToCpu;
using cuda_test::ToGpu;

class CudaOps : public cuda_test::CudaTest {};

TEST_F(CudaOps, GemmMatchesCpuIncludingF32OutputOfBf16) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t m = 33, k = 64, n = 17;
        Tensor a = R(ta ? Shape{k, m} : Shape{m, k}, 1), b = R(tb ? Shape{n, k} : Shape{k, n}, 2);
        Tensor c0 = R({m, n}, 3);
        // CPU reference on the inputs the GPU sees (rounded to dt).
        Tensor ar = dt == DType::kBF16 ? RoundedBf16(a) : a, br = dt == DType::kBF16 ? RoundedBf16(b) : b;
        Tensor c = Tensor::Empty({m, n}, DType::kF32);
        ops::Copy(c0, c);
        ops::Gemm(ar, ta, br, tb, c, 1.5, 0.5);
        // f32 output (weight gradients accumulate so) of dt inputs.
        Tensor cg = ToGpu(c0, DType::kF32);
        ops::Gemm(ToGpu(a, dt), ta, ToGpu(b, dt), tb, cg, 1.5, 0.5);
        SB_EXPECT_TENSOR_NEAR(ToCpu(cg), c, Tol(DType::kF32, 4.0, k));
        // dt output.
        Tensor cd = ToGpu(c0, dt);
        ops::Gemm(ToGpu(a, dt), ta, ToGpu(b, dt), tb, cd, 1.5, 0.5);
        SB_EXPECT_TENSOR_NEAR(ToCpu(cd), c, Tol(dt, 4.0 * std::sqrt(double(k)), 1));
      }
    }
  }
}

// Uneven groups (grouped GEMM, an empty group included) and equal groups
// (strided-batched): forward, data gradient and f32 weight gradient.
TEST_F(CudaOps, GroupedGemmMatchesCpuForUnevenAndEqualGroups) {
  const int64_t G = 4, D = 32, F = 48;
  for (const std::vector<int64_t>& rows : {std::vector<int64_t>{5, 0, 17, 9}, std::vector<int64_t>{8, 8, 8, 8}}) {
    int64_t n = 0;
    for (int64_t r : rows) n += r;
    for (DType dt : {DType::kF32, DType::kBF16}) {
      Tensor x = R({n, D}, 11), w = R({G, F, D}, 12, 0.2), dy = R({n, F}, 13), dw0 = R({G, F, D}, 14);
      const Tensor xr = dt == DType::kBF16 ? RoundedBf16(x) : x, wr = dt == DType::kBF16 ? RoundedBf16(w) : w;
      const Tensor dyr = dt == DType::kBF16 ? RoundedBf16(dy) : dy;
      Tensor y = Tensor::Empty({n, F}, DType::kF32), dx = Tensor::Empty({n, D}, DType::kF32);
      Tensor dw = Tensor::Empty({G, F, D}, DType::kF32);
      ops::Copy(dw0, dw);
      ops::GroupedGemm(xr, false, wr, true, y, rows);
      ops::GroupedGemm(dyr, false, wr, false, dx, rows);
      ops::GroupedGemm(dyr, true, xr, false, dw, rows, 1.0, 1.0);
      Tensor yg = Tensor::Empty({n, F}, dt, Device::kCuda), dxg = Tensor::Empty({n, D}, dt, Device::kCuda);
      Tensor dwg = ToGpu(dw0, DType::kF32);
      ops::GroupedGemm(ToGpu(x, dt), false, ToGpu(w, dt), true, yg, rows);
      ops::GroupedGemm(ToGpu(dy, dt), false, ToGpu(w, dt), false, dxg, rows);
      ops::GroupedGemm(ToGpu(dy, dt), true, ToGpu(x, dt), false, dwg, rows, 1.0, 1.0);
      SB_EXPECT_TENSOR_NEAR(ToCpu(yg), y, Tol(dt, 0.2 * std::sqrt(double(D)) * 4));
      SB_EXPECT_TENSOR_NEAR(ToCpu(dxg), dx, Tol(dt, 0.2 * std::sqrt(double(F)) * 4));
      SB_EXPECT_TENSOR_NEAR(ToCpu(dwg), dw, Tol(DType::kF32, 4.0, 17));
    }
  }
}

TEST_F(CudaOps, ElementwiseAndReductionsMatchCpu) {
  const int64_t n = 3000;
  Tensor a = R({n}, 21), b = R({n}, 22);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const Tensor ar = dt == DType::kBF16 ? RoundedBf16(a) : a, br = dt == DType::kBF16 ? RoundedBf16(b) : b;
    Tensor sum = Tensor::Empty({n}, DType::kF32), prod = Tensor::Empty({n}, DType::kF32);
    ops::Add(ar, br, sum);
    ops::Mul(ar, br, prod);
    Tensor sg = Tensor::Empty({n}, dt, Device::kCuda), pg = Tensor::Empty({n}, dt, Device::kCuda);
    ops::Add(ToGpu(a, dt), ToGpu(b, dt), sg);
    ops::Mul(ToGpu(a, dt), ToGpu(b, dt), pg);
    SB_EXPECT_TENSOR_NEAR(ToCpu(sg), sum, Tol(dt, 8.0));
    SB_EXPECT_TENSOR_NEAR(ToCpu(pg), prod, Tol(dt, 16.0));
    // Axpy of f32 into dt (the router's gradient into bf16 activations), Scale, Fill.
    Tensor y = Tensor::Empty({n}, DType::kF32);
    ops::Copy(br, y);
    ops::Axpy(0.5, a, y);
    ops::Scale(y, 2.0);
    Tensor yg = ToGpu(b, dt);
    ops::Axpy(0.5, ToGpu(a, DType::kF32), yg);
    ops::Scale(yg, 2.0);
    SB_EXPECT_TENSOR_NEAR(ToCpu(yg), y, Tol(dt, 16.0, 2));
    ops::Fill(yg, 0.25);
    for (double v : ToCpu(yg).ToDoubles()) ASSERT_EQ(v, 0.25);
    // Sums of squares: fixed order, so two runs agree to the bit.
    const double expect = ops::SumSquares(ar);
    const double got = ops::SumSquares(ToGpu(a, dt));
    EXPECT_NEAR(got, expect, 1e-12 * expect + 1e-9);
    EXPECT_EQ(ops::SumSquares(ToGpu(a, dt)), got);
    EXPECT_NEAR(ops::SumSquaresOfAll({ToGpu(a, dt), ToGpu(b, dt)}), expect + ops::SumSquares(br),
                1e-9 * expect);
    EXPECT_TRUE(ops::AllFinite(ToGpu(a, dt)));
  }
  Tensor bad = R({n}, 23);
  bad.data<float>()[1234] = NAN;
  EXPECT_FALSE(ops::AllFinite(ToGpu(bad)));
  // Convert rounds to nearest even exactly as the CPU does.
  Tensor ties = Tensor::FromVector<float>({1.0f, 1.00390625f, 1.01171875f, -3.5f}, {4});
  Tensor cpu_bf16 = Tensor::Empty({4}, DType::kBF16), gpu_bf16 = Tensor::Empty({4}, DType::kBF16, Device::kCuda);
  ops::Convert(ties, cpu_bf16);
  ops::Convert(ToGpu(ties), gpu_bf16);
  EXPECT_TRUE(BitwiseEqual(gpu_bf16, ToGpu(cpu_bf16, DType::kBF16)));
}

TEST_F(CudaOps, RmsNormRopeSwigluMatchCpu) {
  const int64_t T = 12, D = 16, seq = 6;
  Tensor x = R({T, D}, 31), w = R({D}, 32), u = R({T, D}, 33);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const Tensor xr = dt == DType::kBF16 ? RoundedBf16(x) : x, wr = dt == DType::kBF16 ? RoundedBf16(w) : w;
    const Tensor ur = dt == DType::kBF16 ? RoundedBf16(u) : u;
    Tensor y = Tensor::Empty({T, D}, DType::kF32), r = Tensor::Empty({T}, DType::kF32);
    ops::RmsNormForward(xr, wr, 1e-5, y, r);
    Tensor yg = Tensor::Empty({T, D}, dt, Device::kCuda), rg = Tensor::Empty({T}, DType::kF32, Device::kCuda);
    ops::RmsNormForward(ToGpu(x, dt), ToGpu(w, dt), 1e-5, yg, rg);
    SB_EXPECT_TENSOR_NEAR(ToCpu(yg), y, Tol(dt, 8.0));
    SB_EXPECT_TENSOR_NEAR(ToCpu(rg), r, Tol(DType::kF32, 4.0, D));
    Tensor dx = Tensor::Empty({T, D}, DType::kF32), dw = Tensor::Zeros({D}, DType::kF32);
    ops::RmsNormBackward(xr, wr, r, ur, dx, dw);
    Tensor dxg = Tensor::Empty({T, D}, dt, Device::kCuda), dwg = Tensor::Zeros({D}, DType::kF32, Device::kCuda);
    ops::RmsNormBackward(ToGpu(x, dt), ToGpu(w, dt), rg, ToGpu(u, dt), dxg, dwg);
    SB_EXPECT_TENSOR_NEAR(ToCpu(dxg), dx, Tol(dt, 16.0, D));
    SB_EXPECT_TENSOR_NEAR(ToCpu(dwg), dw, Tol(DType::kF32, 16.0, T));
    // RoPE (4 heads of 4) with f32 tables on dt activations, and its inverse.
    Tensor c = Tensor::Empty({seq, 2}, DType::kF32), s = Tensor::Empty({seq, 2}, DType::kF32);
    ops::RopeTables(seq, 4, 10000.0, c, s);
    Tensor xrot = Tensor::Empty({T, D}, DType::kF32);
    ops::Copy(xr, xrot);
    ops::Rope(xrot, c, s, seq, false);
    Tensor xrg = ToGpu(x, dt);
    ops::Rope(xrg, ToGpu(c), ToGpu(s), seq, false);
    SB_EXPECT_TENSOR_NEAR(ToCpu(xrg), xrot, Tol(dt, 8.0));
    ops::Rope(xrg, ToGpu(c), ToGpu(s), seq, true);
    SB_EXPECT_TENSOR_NEAR(ToCpu(xrg), xr, Tol(dt, 16.0));
    // SwiGLU forward and backward (dout aliasing dup, as the MLP does).
    Tensor o = Tensor::Empty({T, D}, DType::kF32);
    ops::SwigluForward(xr, ur, o);
    Tensor og = Tensor::Empty({T, D}, dt, Device::kCuda);
    ops::SwigluForward(ToGpu(x, dt), ToGpu(u, dt), og);
    SB_EXPECT_TENSOR_NEAR(ToCpu(og), o, Tol(dt, 16.0));
    Tensor dg = Tensor::Empty({T, D}, DType::kF32), du = Tensor::Empty({T, D}, DType::kF32);
    ops::Copy(y, du);
    ops::SwigluBackward(xr, ur, du, dg, du);
    Tensor dgg = Tensor::Empty({T, D}, dt, Device::kCuda), dug = ToGpu(y, dt);
    ops::SwigluBackward(ToGpu(x, dt), ToGpu(u, dt), dug, dgg, dug);
    SB_EXPECT_TENSOR_NEAR(ToCpu(dgg), dg, Tol(dt, 32.0));
    SB_EXPECT_TENSOR_NEAR(ToCpu(dug), du, Tol(dt, 32.0));
  }
}

TEST_F(CudaOps, EmbeddingForwardAndDeterministicBackward) {
  const int64_t V = 50, D = 24, T = 400;
  std::vector<int32_t> ids(T);
  for (int64_t t = 0; t < T; ++t) ids[t] = static_cast<int32_t>((t * 7) % 13);  // many repeats
  const Tensor idc = Tensor::FromVector(ids, {T});
  Tensor table = R({V, D}, 41), dout = R({T, D}, 42);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const Tensor tr = dt == DType::kBF16 ? RoundedBf16(table) : table;
    const Tensor dr = dt == DType::kBF16 ? RoundedBf16(dout) : dout;
    Tensor out = Tensor::Empty({T, D}, DType::kF32);
    ops::EmbeddingForward(idc, tr, out);
    Tensor outg = Tensor::Empty({T, D}, dt, Device::kCuda);
    ops::EmbeddingForward(ToGpu(idc), ToGpu(table, dt), outg);
    SB_EXPECT_TENSOR_NEAR(ToCpu(outg), out, 0.0);  // a copy
    Tensor dtab = Tensor::Zeros({V, D}, DType::kF32);
    ops::EmbeddingBackward(idc, dr, dtab);
    Tensor g1 = Tensor::Zeros({V, D}, DType::kF32, Device::kCuda);
    Tensor g2 = Tensor::Zeros({V, D}, DType::kF32, Device::kCuda);
    ops::EmbeddingBackward(ToGpu(idc), ToGpu(dout, dt), g1);  // bf16 rows into f32 gradients
    ops::EmbeddingBackward(ToGpu(idc), ToGpu(dout, dt), g2);
    SB_EXPECT_TENSOR_NEAR(ToCpu(g1), dtab, Tol(DType::kF32, 4.0, T / 13.0));
    EXPECT_TRUE(BitwiseEqual(g1, g2)) << "the scatter-add must not depend on scheduling";
  }
}

// The own f32 kernel against the CPU op (both checked elsewhere), then
// cuDNN's bf16 attention against the own kernel on the same rounded inputs.
TEST_F(CudaOps, AttentionReferenceMatchesCpuAndCudnnMatchesReference) {
  const int64_t B = 2, S = 96, H = 4, Hkv = 2, hd = 64;
  Tensor q = R({B * S, H * hd}, 51), k = R({B * S, Hkv * hd}, 52), v = R({B * S, Hkv * hd}, 53);
  Tensor dout = R({B * S, H * hd}, 54);
  Tensor lse = Tensor::Empty({B, H, S}, DType::kF32), out = Tensor::Empty(q.shape(), DType::kF32);
  ops::CausalAttentionForward(q, k, v, S, lse, out);
  Tensor dq = Tensor::Empty(q.shape(), DType::kF32), dk = Tensor::Empty(k.shape(), DType::kF32);
  Tensor dv = Tensor::Empty(v.shape(), DType::kF32);
  ops::CausalAttentionBackward(q, k, v, out, lse, dout, S, dq, dk, dv);
  Tensor lg = Tensor::Empty(lse.shape(), DType::kF32, Device::kCuda);
  Tensor og = Tensor::Empty(q.shape(), DType::kF32, Device::kCuda);
  ops::CausalAttentionForward(ToGpu(q), ToGpu(k), ToGpu(v), S, lg, og);
  const double tol = Tol(DType::kF32, 1.0, S * hd);
  SB_EXPECT_TENSOR_NEAR(ToCpu(og), out, tol);
  SB_EXPECT_TENSOR_NEAR(ToCpu(lg), lse, tol * std::sqrt(double(hd)));
  Tensor dqg = Tensor::Empty(q.shape(), DType::kF32, Device::kCuda);
  Tensor dkg = Tensor::Empty(k.shape(), DType::kF32, Device::kCuda);
  Tensor dvg = Tensor::Empty(v.shape(), DType::kF32, Device::kCuda);
  ops::CausalAttentionBackward(ToGpu(q), ToGpu(k), ToGpu(v), og, lg, ToGpu(dout), S, dqg, dkg, dvg);
  SB_EXPECT_TENSOR_NEAR(ToCpu(dqg), dq, 8 * tol);
  SB_EXPECT_TENSOR_NEAR(ToCpu(dkg), dk, 8 * tol * H / Hkv);
  SB_EXPECT_TENSOR_NEAR(ToCpu(dvg), dv, 8 * tol * H / Hkv);
#if SB_CUDA
  ASSERT_EQ(cuda::CudnnLoadError(), "") << "bf16 training needs cuDNN";
  // bf16 through cuDNN (ops dispatch) vs the reference kernel in f32 on the
  // same bf16-rounded inputs; outputs are bf16 (relative 2^-8).
  const Tensor qb = ToGpu(q, DType::kBF16), kb = ToGpu(k, DType::kBF16), vb = ToGpu(v, DType::kBF16);
  const Tensor dob = ToGpu(dout, DType::kBF16);
  Tensor lb = Tensor::Empty(lse.shape(), DType::kF32, Device::kCuda);
  Tensor ob = Tensor::Empty(q.shape(), DType::kBF16, Device::kCuda);
  ops::CausalAttentionForward(qb, kb, vb, S, lb, ob);
  Tensor lr = Tensor::Empty(lse.shape(), DType::kF32, Device::kCuda);
  Tensor orf = Tensor::Empty(q.shape(), DType::kF32, Device::kCuda);
  cuda::ReferenceAttentionForward(ToGpu(ToCpu(qb)), ToGpu(ToCpu(kb)), ToGpu(ToCpu(vb)), S, lr, orf);
  SB_EXPECT_TENSOR_NEAR(ToCpu(ob), ToCpu(orf), Tol(DType::kBF16, 2.0, 4));
  SB_EXPECT_TENSOR_NEAR(ToCpu(lb), ToCpu(lr), Tol(DType::kBF16, 2.0, 4));
  Tensor dqb = Tensor::Empty(q.shape(), DType::kBF16, Device::kCuda);
  Tensor dkb = Tensor::Empty(k.shape(), DType::kBF16, Device::kCuda);
  Tensor dvb = Tensor::Empty(v.shape(), DType::kBF16, Device::kCuda);
  ops::CausalAttentionBackward(qb, kb, vb, ob, lb, dob, S, dqb, dkb, dvb);
  Tensor dqr = Tensor::Empty(q.shape(), DType::kF32, Device::kCuda);
  Tensor dkr = Tensor::Empty(k.shape(), DType::kF32, Device::kCuda);
  Tensor dvr = Tensor::Empty(v.shape(), DType::kF32, Device::kCuda);
  cuda::ReferenceAttentionBackward(ToGpu(ToCpu(qb)), ToGpu(ToCpu(kb)), ToGpu(ToCpu(vb)),
                                   ToGpu(ToCpu(ob)), lb, ToGpu(ToCpu(dob)), S, dqr, dkr, dvr);
  const double gscale = 4.0 * std::sqrt(double(S));
  SB_EXPECT_TENSOR_NEAR(ToCpu(dqb), ToCpu(dqr), Tol(DType::kBF16, gscale, 4));
  SB_EXPECT_TENSOR_NEAR(ToCpu(dkb), ToCpu(dkr), Tol(DType::kBF16, gscale * H / Hkv, 4));
  SB_EXPECT_TENSOR_NEAR(ToCpu(dvb), ToCpu(dvr), Tol(DType::kBF16, gscale * H / Hkv, 4));
  // cuDNN's deterministic backward: the same bits twice.
  Tensor dq2 = Tensor::Empty(q.shape(), DType::kBF16, Device::kCuda);
  Tensor dk2 = Tensor::Empty(k.shape(), DType::kBF16, Device::kCuda);
  Tensor dv2 = Tensor::Empty(v.shape(), DType::kBF16, Device::kCuda);
  ops::CausalAttentionBackward(qb, kb, vb, ob, lb, dob, S, dq2, dk2, dv2);
  EXPECT_TRUE(BitwiseEqual(dqb, dq2) && BitwiseEqual(dkb, dk2) && BitwiseEqual(dvb, dv2));
#endif
}

TEST_F(CudaOps, SoftmaxMatchesCpu) {
  const int64_t T = 37, E = 19;
  Tensor x = R({T, E}, 61, 3.0), dp = R({T, E}, 62), dl0 = R({T, E}, 63);
  Tensor p = Tensor::Empty({T, E}, DType::kF32), l = Tensor::Empty({T}, DType::kF32);
  ops::SoftmaxForward(x, p, l);
  Tensor pg = Tensor::Empty({T, E}, DType::kF32, Device::kCuda), lg = Tensor::Empty({T}, DType::kF32, Device::kCuda);
  ops::SoftmaxForward(ToGpu(x), pg, lg);
  SB_EXPECT_TENSOR_NEAR(ToCpu(pg), p, Tol(DType::kF32, 1.0, E));
  SB_EXPECT_TENSOR_NEAR(ToCpu(lg), l, Tol(DType::kF32, 8.0, E));
  Tensor dl = Tensor::Empty({T, E}, DType::kF32);
  ops::Copy(dl0, dl);
  ops::SoftmaxBackward(p, dp, dl);
  Tensor dlg = ToGpu(dl0);
  ops::SoftmaxBackward(pg, ToGpu(dp), dlg);
  SB_EXPECT_TENSOR_NEAR(ToCpu(dlg), dl, Tol(DType::kF32, 4.0, E));
}

// The fused LM head: losses, dhidden and the f32 head gradient, with a
// chunk size that splits the tokens unevenly and an ignored target.
TEST_F(CudaOps, LmHeadCrossEntropyMatchesCpu) {
  const int64_t T = 50, D = 32, V = 1000, chunk = 17;
  Tensor h = R({T, D}, 71), w = R({V, D}, 72, 0.3), dw0 = R({V, D}, 73);
  std::vector<int32_t> y(T);
  for (int64_t t = 0; t < T; ++t) y[t] = t == 7 ? -1 : static_cast<int32_t>((t * 97) % V);
  const Tensor yc = Tensor::FromVector(y, {T});
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const Tensor hr = dt == DType::kBF16 ? RoundedBf16(h) : h, wr = dt == DType::kBF16 ? RoundedBf16(w) : w;
    Tensor loss = Tensor::Empty({T}, DType::kF32), dh = Tensor::Empty({T, D}, DType::kF32);
    Tensor dw = Tensor::Empty({V, D}, DType::kF32);
    ops::Copy(dw0, dw);
    ops::LmHeadCrossEntropy(hr, wr, yc, chunk, 0.1, loss, dh, dw);
    Tensor lg = Tensor::Empty({T}, DType::kF32, Device::kCuda), dhg = Tensor::Empty({T, D}, dt, Device::kCuda);
    Tensor dwg = ToGpu(dw0);
    ops::LmHeadCrossEntropy(ToGpu(h, dt), ToGpu(w, dt), ToGpu(yc), chunk, 0.1, lg, dhg, dwg);
    // Logits are f32 GEMM outputs in both: only dhidden is rounded to dt.
    SB_EXPECT_TENSOR_NEAR(ToCpu(lg), loss, Tol(DType::kF32, 16.0, D));
    SB_EXPECT_TENSOR_NEAR(ToCpu(dhg), dh, Tol(dt, 0.1 * 0.3 * 4, 4));
    SB_EXPECT_TENSOR_NEAR(ToCpu(dwg), dw, Tol(dt, 0.1 * 4, 4));
    Tensor only = Tensor::Empty({T}, DType::kF32, Device::kCuda);
    ops::LmHeadCrossEntropy(ToGpu(h, dt), ToGpu(w, dt), ToGpu(yc), chunk, 0.0, only, Tensor(), Tensor());
    EXPECT_TRUE(BitwiseEqual(only, lg));
  }
}

}  // namespace
}  // namespace sb
