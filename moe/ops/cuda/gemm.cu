// CUDA GEMMs through cuBLAS: bf16 or f32 storage, f32 accumulation
// (CUBLAS_COMPUTE_32F), an f32 C for bf16 A and B allowed (weight
// gradients). Row-major C = op(A) op(B) is computed as the column-major
// C^T = op(B)^T op(A)^T. The experts' GEMMs (GroupedGemm) go to one
// strided-batched call when every group has the same rows (fixed capacity)
// and to one grouped call (cublasGemmGroupedBatchedEx) otherwise.
#include <cstdio>
#include <vector>

#include "moe/ops/cuda/cuda_common.cuh"
#include "moe/ops/cuda/cuda_ops.h"

namespace sb::cuda {
namespace {

cublasHandle_t Handle() {
  // One handle per thread (cuBLAS handles are not thread-safe).
  thread_local cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    SB_CUBLAS_CHECK(cublasCreate(&h));
    SB_CUBLAS_CHECK(cublasSetStream(h, kStream));
    return h;
  }();
  return handle;
}

cudaDataType_t CudaType(DType d) {
  SB_CHECK(d == DType::kF32 || d == DType::kBF16) << "cuBLAS GEMM on " << DTypeName(d);
  return d == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
}

void CheckTypes(const Tensor& a, const Tensor& b, const Tensor& c) {
  SB_CHECK(a.dtype() == b.dtype() && (c.dtype() == a.dtype() || c.dtype() == DType::kF32) &&
           a.device() == Device::kCuda && b.device() == Device::kCuda && c.device() == Device::kCuda)
      << "cuBLAS GEMM dtypes " << a.ToString() << " x " << b.ToString() << " -> " << c.ToString();
}

// One operand of a GroupedGemm as group g sees it.
struct GroupView {
  char* base;
  size_t elem;     // bytes per element
  bool stacked;    // [G, r, w] vs row-blocked [N, w]
  int64_t r, w;    // stacked: each slice is [r, w]; row-blocked: w = width
  int64_t Rows(int64_t group_rows) const { return stacked ? r : group_rows; }
  char* At(int64_t g, int64_t offset) const {
    return base + elem * static_cast<size_t>(stacked ? g * r * w : offset * w);
  }
  int64_t Stride(int64_t group_rows) const { return stacked ? r * w : group_rows * w; }
};

// Device pointer arrays for cublasGemmGroupedBatchedEx, passed as kernel
// parameters (3 x 128 pointers fit the 4 KiB parameter space).
constexpr int kPointersPerLaunch = 128;
struct PointerBatch {
  int count;
  const void* a[kPointersPerLaunch];
  const void* b[kPointersPerLaunch];
  void* c[kPointersPerLaunch];
};

__global__ void WritePointersKernel(PointerBatch batch, void** a, void** b, void** c) {
  const int i = threadIdx.x;
  if (i >= batch.count) return;
  a[i] = const_cast<void*>(batch.a[i]);
  b[i] = const_cast<void*>(batch.b[i]);
  c[i] = batch.c[i];
}

GroupView ViewOf(const Tensor& t) {
  GroupView v;
  v.base = static_cast<char*>(t.raw());
  v.elem = DTypeSize(t.dtype());
  v.stacked = t.ndim() == 3;
  v.r = v.stacked ? t.dim(1) : 0;
  v.w = t.dim(-1);
  return v;
}

}  // namespace

void Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
          double alpha, double beta) {
  CheckTypes(a, b, c);
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  SB_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n)
      << "Gemm shapes " << a.ToString() << " " << b.ToString() << " " << c.ToString();
  if (m == 0 || n == 0) return;
  if (k == 0) {  // the product is zero
    if (beta == 0.0) Fill(c, 0.0); else Scale(c, beta);
    return;
  }
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  SB_CUBLAS_CHECK(cublasGemmEx(Handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                               trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
                               static_cast<int>(m), static_cast<int>(k), &alpha_f, b.raw(),
                               CudaType(b.dtype()), static_cast<int>(b.dim(1)), a.raw(),
                               CudaType(a.dtype()), static_cast<int>(a.dim(1)), &beta_f, c.raw(),
                               CudaType(c.dtype()), static_cast<int>(n), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
}

void GroupedGemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                 const std::vector<int64_t>& rows, double alpha, double beta) {
  CheckTypes(a, b, c);
  const int64_t groups = static_cast<int64_t>(rows.size());
  int64_t total = 0;
  for (int64_t r : rows) total += r;
  for (const Tensor* t : {&a, &b, &c}) {
    SB_CHECK((t->ndim() == 3 && t->dim(0) == groups) || (t->ndim() == 2 && t->dim(0) == total))
        << "GroupedGemm operand " << t->ToString() << " is neither a stack of " << groups
        << " matrices nor " << total << " row-blocked rows";
  }
  const GroupView va = ViewOf(a), vb = ViewOf(b), vc = ViewOf(c);
  const cudaDataType_t ta = CudaType(a.dtype()), tc = CudaType(c.dtype());
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  // Per-group problem in cuBLAS's column-major terms (A_cublas = b, B_cublas = a).
  struct Problem {
    int m, n, k, lda, ldb, ldc;
    const void* A;
    const void* B;
    void* C;
  };
  std::vector<Problem> problems;
  bool uniform = groups > 0;
  int64_t offset = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t ar = va.Rows(rows[g]), br = vb.Rows(rows[g]), cr = vc.Rows(rows[g]);
    const int64_t m = trans_a ? va.w : ar, k = trans_a ? ar : va.w;
    const int64_t kb = trans_b ? vb.w : br, n = trans_b ? br : vb.w;
    SB_CHECK(k == kb && cr == m && vc.w == n)
        << "GroupedGemm group " << g << ": op(a) " << m << "x" << k << ", op(b) " << kb << "x" << n
        << ", c " << cr << "x" << vc.w;
    uniform = uniform && rows[g] == rows[0];
    if (m > 0 && n > 0 && k > 0) {
      problems.push_back({static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
                          static_cast<int>(vb.w), static_cast<int>(va.w), static_cast<int>(vc.w),
                          vb.At(g, offset), va.At(g, offset), vc.At(g, offset)});
    } else if (m > 0 && n > 0 && beta != 1.0) {
      // No rows in this group: the product is zero, c_g = beta c_g.
      const Tensor cg = vc.stacked ? c.Rows(g, g + 1) : c.Rows(offset, offset + cr);
      if (beta == 0.0) Fill(cg, 0.0); else Scale(cg, beta);
    }
    offset += rows[g];
  }
  if (problems.empty()) return;
  const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const Problem& p0 = problems[0];
  if (uniform && static_cast<int64_t>(problems.size()) == groups) {
    SB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        Handle(), op_a, op_b, p0.m, p0.n, p0.k, &alpha_f, p0.A, ta, p0.lda, vb.Stride(rows[0]), p0.B,
        ta, p0.ldb, va.Stride(rows[0]), &beta_f, p0.C, tc, p0.ldc, vc.Stride(rows[0]),
        static_cast<int>(groups), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  // Grouped: one problem per group (group_size 1); host shape arrays, device
  // pointer arrays written by a kernel from its parameters (no host-to-device
  // copy, which could wait for the queued work).
  const int count = static_cast<int>(problems.size());
  std::vector<cublasOperation_t> opa(count, op_a), opb(count, op_b);
  std::vector<int> ms(count), ns(count), ks(count), ldas(count), ldbs(count), ldcs(count), ones(count, 1);
  std::vector<float> alphas(count, alpha_f), betas(count, beta_f);
  Tensor ptrs = Tensor::Empty({3 * int64_t{count}}, DType::kI64, Device::kCuda);
  void** dev = static_cast<void**>(ptrs.raw());
  for (int first = 0; first < count; first += kPointersPerLaunch) {
    PointerBatch batch;
    batch.count = std::min(kPointersPerLaunch, count - first);
    for (int i = 0; i < batch.count; ++i) {
      const Problem& p = problems[first + i];
      batch.a[i] = p.A;
      batch.b[i] = p.B;
      batch.c[i] = p.C;
    }
    WritePointersKernel<<<1, kPointersPerLaunch, 0, kStream>>>(batch, dev + first, dev + count + first,
                                                                dev + 2 * count + first);
  }
  CheckLaunch();
  for (int i = 0; i < count; ++i) {
    const Problem& p = problems[i];
    ms[i] = p.m;
    ns[i] = p.n;
    ks[i] = p.k;
    ldas[i] = p.lda;
    ldbs[i] = p.ldb;
    ldcs[i] = p.ldc;
  }
  const cublasStatus_t st = cublasGemmGroupedBatchedEx(
      Handle(), opa.data(), opb.data(), ms.data(), ns.data(), ks.data(), alphas.data(),
      const_cast<const void* const*>(dev), ta, ldas.data(), const_cast<const void* const*>(dev + count), ta,
      ldbs.data(), betas.data(), dev + 2 * count, tc, ldcs.data(), count, ones.data(), CUBLAS_COMPUTE_32F);
  if (st == CUBLAS_STATUS_SUCCESS) return;
  SB_CHECK(st == CUBLAS_STATUS_NOT_SUPPORTED) << "cublasGemmGroupedBatchedEx: " << cublasGetStatusString(st);
  // A dtype combination this cuBLAS does not group: one GEMM per group.
  static bool warned = false;
  if (!warned) {
    warned = true;
    std::fprintf(stderr, "switchboard: cublasGemmGroupedBatchedEx does not support %s x %s -> %s "
                 "here; running one cuBLAS GEMM per expert instead\n",
                 DTypeName(a.dtype()), DTypeName(b.dtype()), DTypeName(c.dtype()));
  }
  for (const Problem& p : problems) {
    SB_CUBLAS_CHECK(cublasGemmEx(Handle(), op_a, op_b, p.m, p.n, p.k, &alpha_f, p.A, ta, p.lda, p.B,
                                 ta, p.ldb, &beta_f, p.C, tc, p.ldc, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace sb::cuda
