// CUDA twins of the ops in moe/ops/ops.h that have a GPU implementation so
// far (f32 and bf16 tensors; reductions and statistics in f32). Each is tested
// against its CPU reference in moe/ops/cuda/cuda_ops_test.cc. Ops without a
// twin fail loudly on CUDA tensors (SB_CPU_ONLY).
#pragma once

#include <cstdint>

#include "moe/core/tensor.h"

namespace sb::cuda {

void Fill(const Tensor& x, double value);
void Add(const Tensor& a, const Tensor& b, const Tensor& out);
void Axpy(double alpha, const Tensor& x, const Tensor& y);
void Scale(const Tensor& x, double alpha);
double SumSquares(const Tensor& x);
void Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
          double alpha, double beta);
void RmsNormForward(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                    const Tensor& rstd);
void RmsNormBackward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                     const Tensor& dx, const Tensor& dw);
void Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int seq_len, bool inverse);
void SwigluForward(const Tensor& gate, const Tensor& up, const Tensor& out);
void SwigluBackward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                    const Tensor& dgate, const Tensor& dup);

}  // namespace sb::cuda
