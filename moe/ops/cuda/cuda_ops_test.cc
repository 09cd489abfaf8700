// CUDA twins against their CPU references (f32 and bf16). Skips cleanly on
// machines without a GPU or driver; run on a GPU box to exercise them.
#include <cmath>

#include "gtest/gtest.h"
#include "moe/core/device_memory.h"
#include "moe/ops/ops.h"
#include "tests/testing/grad_check.h"

namespace sb {
namespace {

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaBuilt()) GTEST_SKIP() << "built without CUDA (SB_CUDA=OFF)";
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device or driver on this machine";
  }
  // Copy of a CPU f32 tensor on the GPU in `dtype` (f32 or bf16).
  static Tensor ToGpu(const Tensor& cpu, DType dtype) {
    Tensor staged = Tensor::Empty(cpu.shape(), dtype);
    ops::Convert(cpu, staged);
    Tensor gpu = Tensor::Empty(cpu.shape(), dtype, Device::kCuda);
    ops::Copy(staged, gpu);
    return gpu;
  }
  static Tensor ToCpuF32(const Tensor& gpu) {
    Tensor staged = Tensor::Empty(gpu.shape(), gpu.dtype());
    ops::Copy(gpu, staged);
    Tensor out = Tensor::Empty(gpu.shape(), DType::kF32);
    ops::Convert(staged, out);
    return out;
  }
  // bf16 keeps 8 significant bits: relative error 2^-8 per rounding.
  static double Tol(DType d, double scale) { return d == DType::kBF16 ? 2e-2 * scale : 1e-4 * scale; }
};

TEST_F(CudaOps, GemmMatchesCpu) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t m = 33, k = 64, n = 17;
        Tensor a = testing::RandomTensor(ta ? Shape{k, m} : Shape{m, k}, 1, 1.0, DType::kF32);
        Tensor b = testing::RandomTensor(tb ? Shape{n, k} : Shape{k, n}, 2, 1.0, DType::kF32);
        Tensor c = Tensor::Zeros({m, n}, DType::kF32);
        ops::Gemm(a, ta, b, tb, c);
        Tensor cg = ToGpu(Tensor::Zeros({m, n}, DType::kF32), dt);
        ops::Gemm(ToGpu(a, dt), ta, ToGpu(b, dt), tb, cg);
        SB_EXPECT_TENSOR_NEAR(ToCpuF32(cg), c, Tol(dt, std::sqrt(double(k))));
      }
    }
  }
}

TEST_F(CudaOps, ElementwiseRmsNormRopeSwigluMatchCpu) {
  const int64_t T = 12, D = 16, seq = 6;
  Tensor x = testing::RandomTensor({T, D}, 3, 1.0, DType::kF32);
  Tensor w = testing::RandomTensor({D}, 4, 1.0, DType::kF32);
  Tensor u = testing::RandomTensor({T, D}, 5, 1.0, DType::kF32);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    // RMSNorm forward and backward
    Tensor y = Tensor::Empty({T, D}, DType::kF32), r = Tensor::Empty({T}, DType::kF32);
    ops::RmsNormForward(x, w, 1e-5, y, r);
    Tensor yg = ToGpu(y, dt), rg = ToGpu(r, dt);
    ops::RmsNormForward(ToGpu(x, dt), ToGpu(w, dt), 1e-5, yg, rg);
    SB_EXPECT_TENSOR_NEAR(ToCpuF32(yg), y, Tol(dt, 4.0));
    Tensor dx = Tensor::Empty({T, D}, DType::kF32), dw = Tensor::Zeros({D}, DType::kF32);
    ops::RmsNormBackward(x, w, r, u, dx, dw);
    Tensor dxg = ToGpu(dx, dt), dwg = ToGpu(Tensor::Zeros({D}, DType::kF32), dt);
    ops::RmsNormBackward(ToGpu(x, dt), ToGpu(w, dt), ToGpu(r, dt), ToGpu(u, dt), dxg, dwg);
    SB_EXPECT_TENSOR_NEAR(ToCpuF32(dxg), dx, Tol(dt, 8.0));
    SB_EXPECT_TENSOR_NEAR(ToCpuF32(dwg), dw, Tol(dt, 8.0 * T));
    // RoPE (4 heads of 4)
    Tensor c = Tensor::Empty({seq, 2}, DType::kF32), s = Tensor::Empty({seq, 2}, DType::kF32);
    ops::RopeTables(seq, 4, 10000.0, c, s);
    Tensor xr = Tensor::Empty({T, D}, DType::kF32);
    ops::Copy(x, xr);
    ops::Rope(xr, c, s, seq, false);
    Tensor xrg = ToGpu(x, dt);
    ops::Rope(xrg, ToGpu(c, dt), ToGpu(s, dt), seq, false);
    SB_EXPECT_TENSOR_NEAR(ToCpuF32(xrg), xr, Tol(dt, 4.0));
    // SwiGLU forward/backward, Axpy, Scale, Add, SumSquares
    Tensor o = Tensor::Empty({T, D}, DType::kF32);
    ops::SwigluForward(x, u, o);
    Tensor og = ToGpu(o, dt);
    ops::SwigluForward(ToGpu(x, dt), ToGpu(u, dt), og);
    SB_EXPECT_TENSOR_NEAR(ToCpuF32(og), o, Tol(dt, 8.0));
    Tensor dg = Tensor::Empty({T, D}, DType::kF32), du = Tensor::Empty({T, D}, DType::kF32);
    ops::SwigluBackward(x, u, y, dg, du);
    Tensor dgg = ToGpu(dg, dt), dug = ToGpu(du, dt);
    ops::SwigluBackward(ToGpu(x, dt), ToGpu(u, dt), ToGpu(y, dt), dgg, dug);
    SB_EXPECT_TENSOR_NEAR(ToCpuF32(dgg), dg, Tol(dt, 16.0));
    SB_EXPECT_TENSOR_NEAR(ToCpuF32(dug), du, Tol(dt, 16.0));
    Tensor acc = ToGpu(u, dt);
    ops::Axpy(0.5, ToGpu(x, dt), acc);
    ops::Scale(acc, 2.0);
    Tensor expect = Tensor::Empty({T, D}, DType::kF32);
    ops::Copy(u, expect);
    ops::Axpy(0.5, x, expect);
    ops::Scale(expect, 2.0);
    SB_EXPECT_TENSOR_NEAR(ToCpuF32(acc), expect, Tol(dt, 8.0));
    EXPECT_NEAR(ops::SumSquares(ToGpu(x, dt)), ops::SumSquares(x), Tol(dt, ops::SumSquares(x)));
  }
}

}  // namespace
}  // namespace sb
