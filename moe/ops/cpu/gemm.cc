// CPU reference GEMM through OpenBLAS (row-major CBLAS).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

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
  std::vector<int64_t> offset(groups + 1, 0);
  for (int64_t g = 0; g < groups; ++g) offset[g + 1] = offset[g] + rows[g];
  // Empty groups run too: with a stacked output and no rows the product is
  // zero (Gemm with k = 0 writes beta * c).
  auto run = [&](int64_t g) {
    Gemm(GroupOperand(a, g, offset[g], rows[g]), trans_a, GroupOperand(b, g, offset[g], rows[g]),
         trans_b, GroupOperand(c, g, offset[g], rows[g]), alpha, beta);
  };
  // With at least two non-empty groups per thread the groups run side by
  // side, whole GEMMs per thread, largest first (OpenBLAS's OpenMP build runs
  // one thread inside a parallel region): an MoE layer's per-expert GEMMs
  // are small, and splitting each over the threads costs a barrier and
  // duplicated packing per GEMM (measured in docs/performance.md). Each
  // group then computes the bits of a one-thread run (experts_test.cc).
  const int threads = omp_get_max_threads();
  const int64_t busy = std::count_if(rows.begin(), rows.end(), [](int64_t r) { return r > 0; });
  if (threads > 1 && busy >= 2 * threads && !omp_in_parallel()) {
    std::vector<int64_t> order(groups);
    for (int64_t g = 0; g < groups; ++g) order[g] = g;
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return rows[x] > rows[y]; });
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < groups; ++i) run(order[i]);
    return;
  }
  for (int64_t g = 0; g < groups; ++g) run(g);
}

}  // namespace sb::ops
