// CPU reference GEMM through OpenBLAS (row-major CBLAS).
#include <cblas.h>

#include "moe/ops/dispatch.h"
#include "moe/ops/ops.h"

namespace sb::ops {

void Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
          double alpha, double beta) {
  SB_ON_CUDA(c, Gemm, a, trans_a, b, trans_b, c, alpha, beta);
  CheckSame(a, b, "Gemm");
  CheckSame(a, c, "Gemm");
  SB_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2)
      << "Gemm wants 2-D tensors: " << a.ToString() << " " << b.ToString() << " " << c.ToString();
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  SB_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n)
      << "Gemm shapes: op(a) " << m << "x" << k << ", op(b) " << kb << "x" << n << ", c "
      << c.ToString();
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS leaves C untouched; the product is zero.
    if (beta == 0.0) Fill(c, 0.0); else Scale(c, beta);
    return;
  }
  const auto ta = trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = trans_b ? CblasTrans : CblasNoTrans;
  if (a.dtype() == DType::kF32) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(alpha), a.data<float>(),
                a.dim(1), b.data<float>(), b.dim(1), static_cast<float>(beta), c.data<float>(), n);
  } else if (a.dtype() == DType::kF64) {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data<double>(), a.dim(1),
                b.data<double>(), b.dim(1), beta, c.data<double>(), n);
  } else {
    SB_CHECK(false) << "Gemm on " << a.ToString();
  }
}

}  // namespace sb::ops

namespace sb::ops {
namespace {
// Group g's matrix of a GroupedGemm operand: slice g of a stack, or the
// rows [offset, offset + rows) of a row-blocked matrix.
Tensor GroupOperand(const Tensor& t, int64_t g, int64_t offset, int64_t rows) {
  if (t.ndim() == 3) return t.Rows(g, g + 1).Reshape({t.dim(1), t.dim(2)});
  return t.Rows(offset, offset + rows);
}
}  // namespace

void GroupedGemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                 const std::vector<int64_t>& rows, double alpha, double beta) {
  SB_ON_CUDA(c, GroupedGemm, a, trans_a, b, trans_b, c, rows, alpha, beta);
  const int64_t groups = static_cast<int64_t>(rows.size());
  int64_t total = 0;
  for (int64_t r : rows) {
    SB_CHECK_GE(r, 0);
    total += r;
  }
  for (const Tensor* t : {&a, &b, &c}) {
    SB_CHECK((t->ndim() == 3 && t->dim(0) == groups) || (t->ndim() == 2 && t->dim(0) == total))
        << "GroupedGemm operand " << t->ToString() << " is neither a stack of " << groups
        << " matrices nor " << total << " row-blocked rows";
  }
  int64_t offset = 0;
  for (int64_t g = 0; g < groups; ++g) {
    Gemm(GroupOperand(a, g, offset, rows[g]), trans_a, GroupOperand(b, g, offset, rows[g]),
         trans_b, GroupOperand(c, g, offset, rows[g]), alpha, beta);
    offset += rows[g];
  }
}

}  // namespace sb::ops
