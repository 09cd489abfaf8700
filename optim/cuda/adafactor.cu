// CUDA: Adafactor's update (formulas, sources and differences from T5X:
// optim/adafactor.h). Every parameter is one set of launches over all its
// [R, C] slices; per-slice statistics (row and column means, RMS(p),
// RMS(u)) are f64 sums in a fixed order, and the step size is computed on
// the device, so the update reads nothing back to the host.
#include <cmath>

#include "moe/ops/cuda/cuda_common.cuh"
#include "optim/device_updates.h"

namespace sb::cuda {
namespace {

// Factored slices: blocks (row r, slice s), threads over the row's C columns.
__global__ void RowStatsKernel(const float* p, const float* g, float* row, double* p2_rows,
                               int64_t R, int64_t C, double b2t, double eps1, int scale_by_rms) {
  __shared__ double scratch[kThreads];
  const int64_t r = blockIdx.x, s = blockIdx.y;
  const int64_t base = (s * R + r) * C;
  double acc_g = 0.0, acc_p = 0.0;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    const double gv = g[base + j];
    acc_g += gv * gv + eps1;
    if (scale_by_rms) acc_p += static_cast<double>(p[base + j]) * p[base + j];
  }
  acc_g = BlockSum(acc_g, scratch);
  if (scale_by_rms) acc_p = BlockSum(acc_p, scratch);
  if (threadIdx.x == 0) {
    float& rv = row[s * R + r];
    rv = static_cast<float>(b2t * rv + (1.0 - b2t) * (acc_g / static_cast<double>(C)));
    p2_rows[s * R + r] = acc_p;
  }
}

// Columns: thread per (column c, slice s), summing its R rows in order.
__global__ void ColStatsKernel(const float* g, float* col, int64_t R, int64_t C, double b2t,
                               double eps1) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x, s = blockIdx.y;
  if (c >= C) return;
  double acc = 0.0;
  for (int64_t r = 0; r < R; ++r) {
    const double gv = g[(s * R + r) * C + c];
    acc += gv * gv + eps1;
  }
  float& cv = col[s * C + c];
  cv = static_cast<float>(b2t * cv + (1.0 - b2t) * (acc / static_cast<double>(R)));
}

// Per slice (one thread each): mean of the row statistics and sum of RMS(p)'s rows.
__global__ void SliceMeansKernel(const float* row, const double* p2_rows, int64_t R, int64_t slices,
                                 double* row_mean, double* sum_p2) {
  const int64_t s = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (s >= slices) return;
  double acc = 0.0, p2 = 0.0;
  for (int64_t r = 0; r < R; ++r) {
    acc += static_cast<double>(row[s * R + r]);
    p2 += p2_rows[s * R + r];
  }
  row_mean[s] = acc / static_cast<double>(R);
  sum_p2[s] = p2;
}

// u = g * row_factor * col_factor, the factors rounded to f32 as on the CPU.
__device__ __forceinline__ float FactoredU(float g, float row, double row_mean, float col) {
  const float rf = static_cast<float>(1.0 / sqrt(static_cast<double>(row) / row_mean));
  const float cf = static_cast<float>(1.0 / sqrt(static_cast<double>(col)));
  return g * rf * cf;
}

__global__ void URowsKernel(const float* g, const float* row, const float* col,
                            const double* row_mean, double* u2_rows, int64_t R, int64_t C) {
  __shared__ double scratch[kThreads];
  const int64_t r = blockIdx.x, s = blockIdx.y;
  const int64_t base = (s * R + r) * C;
  double acc = 0.0;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    const double u = FactoredU(g[base + j], row[s * R + r], row_mean[s], col[s * C + j]);
    acc += u * u;
  }
  acc = BlockSum(acc, scratch);
  if (threadIdx.x == 0) u2_rows[s * R + r] = acc;
}

__device__ double StepSize(const AdafactorScalars& a, double sum_p2, double sum_u2, double n) {
  double scale = 1.0;
  if (a.scale_by_param_rms) scale = fmax(a.eps2, sqrt(sum_p2 / n));
  double clip = 1.0;
  if (a.clip_threshold > 0) clip = fmax(1.0, sqrt(sum_u2 / n) / a.clip_threshold);
  return a.lr * scale / clip;
}

// step[s] from the slice's sums (u2 given per row: summed here in order).
__global__ void StepKernel(AdafactorScalars a, const double* sum_p2, const double* u2_rows,
                           int64_t rows_per_slice, int64_t slices, double n, double* step) {
  const int64_t s = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (s >= slices) return;
  double u2 = 0.0;
  for (int64_t r = 0; r < rows_per_slice; ++r) u2 += u2_rows[s * rows_per_slice + r];
  step[s] = StepSize(a, sum_p2[s], u2, n);
}

__device__ __forceinline__ void Apply(float u, float step, float decay, float* m, float beta1,
                                      float one_minus_beta1, float* p) {
  float upd = step * u;
  if (m != nullptr) {
    *m = beta1 * *m + one_minus_beta1 * upd;
    upd = *m;
  }
  *p = decay * *p - upd;
}

__global__ void ApplyFactoredKernel(AdafactorScalars a, float* p, const float* g, const float* row,
                                    const float* col, const double* row_mean, const double* step,
                                    float* m, int64_t R, int64_t C, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = i / (R * C), r = (i / C) % R, c = i % C;
    const float u = FactoredU(g[i], row[s * R + r], row_mean[s], col[s * C + c]);
    Apply(u, static_cast<float>(step[s]), static_cast<float>(a.decay_factor), m ? m + i : nullptr,
          static_cast<float>(a.beta1), static_cast<float>(1.0 - a.beta1), p + i);
  }
}

// Unfactored: v = b2t v + (1 - b2t)(g^2 + eps1) in f32 as on the CPU.
__global__ void SecondMomentKernel(const float* g, float* v, float b2t, float mix, float eps1,
                                   int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    v[i] = b2t * v[i] + mix * (g[i] * g[i] + eps1);
  }
}

struct SquareOfP {
  const float* p;
  __device__ double operator()(int64_t i) const { return static_cast<double>(p[i]) * p[i]; }
};
struct SquareOfU {
  const float* g;
  const float* v;
  __device__ double operator()(int64_t i) const {
    const float u = g[i] / sqrtf(v[i]);
    return static_cast<double>(u) * u;
  }
};

__global__ void ApplyUnfactoredKernel(AdafactorScalars a, float* p, const float* g, const float* v,
                                      const double* step, float* m, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    Apply(g[i] / sqrtf(v[i]), static_cast<float>(*step), static_cast<float>(a.decay_factor),
          m ? m + i : nullptr, static_cast<float>(a.beta1), static_cast<float>(1.0 - a.beta1), p + i);
  }
}

void CheckF32(const Tensor& t, const char* what) {
  SB_CHECK(t.dtype() == DType::kF32 && t.device() == Device::kCuda)
      << "Adafactor on the GPU: " << what << " must be f32 on the device, got " << t.ToString();
}

}  // namespace

void AdafactorUpdate(const Tensor& p, const Tensor& g, const Tensor& row, const Tensor& col,
                     const Tensor& v, const Tensor& exp_avg, const AdafactorScalars& a) {
  CheckF32(p, "param");
  CheckF32(g, "grad");
  const int64_t n = p.numel();
  if (n == 0) return;
  float* m = nullptr;
  if (exp_avg.defined()) {
    CheckF32(exp_avg, "exp_avg");
    m = Ptr<float>(exp_avg);
  }
  if (p.ndim() < 2) {
    CheckF32(v, "v");
    Tensor sums = Tensor::Zeros({3}, DType::kF64, Device::kCuda);  // p2, u2, step
    double* d = Ptr<double>(sums);
    if (a.scale_by_param_rms) DeviceSum(n, SquareOfP{Ptr<const float>(p)}, d);
    SecondMomentKernel<<<Blocks(n), kThreads, 0, kStream>>>(
        Ptr<const float>(g), Ptr<float>(v), static_cast<float>(a.b2t), static_cast<float>(1.0 - a.b2t),
        static_cast<float>(a.eps1), n);
    DeviceSum(n, SquareOfU{Ptr<const float>(g), Ptr<const float>(v)}, d + 1);
    StepKernel<<<1, 1, 0, kStream>>>(a, d, d + 1, 1, 1, static_cast<double>(n), d + 2);
    ApplyUnfactoredKernel<<<Blocks(n), kThreads, 0, kStream>>>(a, Ptr<float>(p), Ptr<const float>(g),
                                                               Ptr<const float>(v), d + 2, m, n);
    CheckLaunch();
    return;
  }
  CheckF32(row, "row");
  CheckF32(col, "col");
  const int64_t R = p.dim(-2), C = p.dim(-1), slices = n / (R * C);
  SB_CHECK(slices <= 65535 && R <= 2147483647) << "Adafactor slices of " << p.ToString();
  Tensor per_row = Tensor::Empty({2 * slices * R}, DType::kF64, Device::kCuda);  // p2, u2 by row
  Tensor per_slice = Tensor::Empty({3 * slices}, DType::kF64, Device::kCuda);   // row mean, p2, step
  double* p2_rows = Ptr<double>(per_row);
  double* u2_rows = p2_rows + slices * R;
  double* row_mean = Ptr<double>(per_slice);
  double* sum_p2 = row_mean + slices;
  double* step = sum_p2 + slices;
  const dim3 rows_grid(static_cast<unsigned>(R), static_cast<unsigned>(slices));
  RowStatsKernel<<<rows_grid, kThreads, 0, kStream>>>(Ptr<const float>(p), Ptr<const float>(g),
                                                      Ptr<float>(row), p2_rows, R, C, a.b2t, a.eps1,
                                                      a.scale_by_param_rms ? 1 : 0);
  const dim3 cols_grid(static_cast<unsigned>((C + kThreads - 1) / kThreads), static_cast<unsigned>(slices));
  ColStatsKernel<<<cols_grid, kThreads, 0, kStream>>>(Ptr<const float>(g), Ptr<float>(col), R, C,
                                                      a.b2t, a.eps1);
  SliceMeansKernel<<<Blocks(slices), kThreads, 0, kStream>>>(Ptr<const float>(row), p2_rows, R,
                                                             slices, row_mean, sum_p2);
  URowsKernel<<<rows_grid, kThreads, 0, kStream>>>(Ptr<const float>(g), Ptr<const float>(row),
                                                   Ptr<const float>(col), row_mean, u2_rows, R, C);
  StepKernel<<<Blocks(slices), kThreads, 0, kStream>>>(a, sum_p2, u2_rows, R, slices,
                                                       static_cast<double>(R * C), step);
  ApplyFactoredKernel<<<Blocks(n), kThreads, 0, kStream>>>(a, Ptr<float>(p), Ptr<const float>(g),
                                                           Ptr<const float>(row), Ptr<const float>(col),
                                                           row_mean, step, m, R, C, n);
  CheckLaunch();
}

}  // namespace sb::cuda
