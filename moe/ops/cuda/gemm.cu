// CUDA GEMM through cuBLAS: bf16 or f32 storage, f32 accumulation. Row-major
// C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T.
#include "moe/ops/cuda/check_cuda.h"
#include "moe/ops/cuda/cuda_ops.h"

namespace sb::cuda {
namespace {
cublasHandle_t Handle() {
  // One handle per thread (cuBLAS handles are not thread-safe).
  thread_local cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    SB_CUBLAS_CHECK(cublasCreate(&h));
    return h;
  }();
  return handle;
}
cudaDataType_t CudaType(DType d) {
  SB_CHECK(d == DType::kF32 || d == DType::kBF16) << "cuBLAS GEMM on " << DTypeName(d);
  return d == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
}
}  // namespace

void Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
          double alpha, double beta) {
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  SB_CHECK(c.dim(0) == m && c.dim(1) == n) << "Gemm shapes " << a.ToString() << " "
                                           << b.ToString() << " " << c.ToString();
  if (m == 0 || n == 0) return;
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  SB_CUBLAS_CHECK(cublasGemmEx(Handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                               trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
                               static_cast<int>(m), static_cast<int>(k), &alpha_f, b.raw(),
                               CudaType(b.dtype()), static_cast<int>(b.dim(1)), a.raw(),
                               CudaType(a.dtype()), static_cast<int>(a.dim(1)), &beta_f, c.raw(),
                               CudaType(c.dtype()), static_cast<int>(n), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
}

}  // namespace sb::cuda
