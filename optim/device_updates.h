// The per-step scalars of the optimizers' element updates and the CUDA
// twins of those updates (optim/cuda/*.cu; f32 parameters and state on the
// GPU). The CPU loops stay in adamw.cc / adafactor.cc; the formulas, their
// sources and every convention are in adamw.h and adafactor.h. Plain
// declarations: no CUDA header is needed to include this.
#pragma once

#include <cstdint>

#include "moe/core/tensor.h"

namespace sb {

// AdamW's per-step scalars, computed in f64 (PyTorch computes them as Python floats).
struct AdamWScalars {
  double decay_factor;  // 1 - lr * wd
  double one_minus_b1;  // lerp weight
  double beta2, one_minus_b2;
  double step_size;     // lr / (1 - b1^t)
  double bc2_sqrt;      // sqrt(1 - b2^t)
  double eps;
};

// Adafactor's per-step hyperparameters (f64), shared by every slice of a parameter.
struct AdafactorScalars {
  double lr;
  double b2t;           // second-moment decay 1 - t^(-decay_rate)
  double eps1, eps2;
  double clip_threshold;  // <= 0: no update clipping
  bool scale_by_param_rms;
  double beta1;         // > 0: momentum
  double decay_factor;  // 1 - lr * wd
};

namespace cuda {

// One AdamW update of p, g, m, v (same shape, f32, on the GPU).
void AdamWUpdate(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                 const AdamWScalars& s);
// One Adafactor update of p (f32, GPU) from g. Factored (p has >= 2 dims):
// row [..., R] and col [..., C] per [R, C] slice of the last two dims; else
// v [shape]. exp_avg (momentum) may be undefined. Every per-slice sum is in
// f64 in a fixed order; nothing is read back to the host.
void AdafactorUpdate(const Tensor& p, const Tensor& g, const Tensor& row, const Tensor& col,
                     const Tensor& v, const Tensor& exp_avg, const AdafactorScalars& s);

}  // namespace cuda
}  // namespace sb
