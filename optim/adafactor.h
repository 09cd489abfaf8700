// Adafactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with
// Sublinear Memory Cost", arXiv:1804.04235) in the form T5X uses for T5 and
// ST-MoE (google-research/t5x, t5x/adafactor.py, Adafactor.apply_param_gradient).
//
// Slices. A tensor with >= 2 dims is a stack of [R, C] matrices over its
// LAST TWO dims; every leading dim is a batch dim (T5X factor rule
// (BATCH, ..., ROW, COLUMN)). An expert stack [E_local, F, D] is E_local
// independent matrices, so the update of an expert does not depend on how
// experts are sharded over ranks. A 1-D (or 0-D) tensor is one slice with an
// unfactored second moment. Every statistic below (row/col means, RMS(u),
// RMS(p)) is taken over one slice.
//
// Per slice, at t = step() + 1 (1-based), with g = grad, p = param:
//   b2t   = 1 - t^(-decay_rate)               (paper: "Increasing Decay Parameter")
//   scale = max(eps2, RMS(p))  if adafactor_scale_by_param_rms, else 1
//                                           (paper: "Relative Step Size", alpha_t)
//   factored [R, C]:                        (paper: Algorithm 4, R_t, C_t, V_t)
//     row_i = b2t row_i + (1 - b2t) mean_j (g_ij^2 + eps1)            row [R]
//     col_j = b2t col_j + (1 - b2t) mean_i (g_ij^2 + eps1)            col [C]
//     u_ij  = g_ij / sqrt(row_i col_j / mean_i(row_i))
//   (means instead of the paper's sums: V = R C / (1^T R) is unchanged; T5X
//    evaluates it as g * (row / mean(row))^-1/2 * col^-1/2, and so do we)
//   unfactored [n]:                         (paper: Algorithm 5)
//     v_i = b2t v_i + (1 - b2t)(g_i^2 + eps1);  u_i = g_i / sqrt(v_i)
//   u    /= max(1, RMS(u) / clip_threshold) (paper: "Update Clipping", d)
//   upd   = lr * scale * u
//   upd   = m = b1 m + (1 - b1) upd    if adafactor_beta1 > 0 (T5X's momentum)
//   p     = (1 - lr * wd) p - upd      (wd = 0 unless UsesWeightDecay)
// At t = 1, b2t = 0: the first second-moment estimate is g^2 + eps1 itself.
//
// Differences from T5X's Adafactor (defaults: decay_rate 0.8, eps1 1e-30,
// eps2 1e-3, clipping_threshold 1, multiply_by_parameter_scale, no beta1):
//  1. Factoring: T5X's heuristic factors the two largest dims, and only when
//     the second largest has >= min_dim_size_to_factor (128) entries; its
//     explicit rules mark dims ROW/COLUMN/BATCH. We always factor the last
//     two dims of a >= 2-D tensor (any size) and treat the others as BATCH.
//  2. Learning rate: we take lr from our schedule (schedule.h); the paper's
//     rho_t = min(1e-2, 1/sqrt(t)) is T5X's rsqrt schedule, not built in.
//  3. Weight decay is lr-coupled, (1 - lr * wd) p: T5X's
//     weight_decay_rate_lr_exponent = 1 with weight_decay_rate = wd.
//  4. Not supported: step_offset, max_parameter_scale, skip_nan_updates, and
//     the built-in global_norm_clip_threshold (grad_clip.h does that).
//  5. Precision: state in the parameter dtype (f32, or f64 for f64 params;
//     T5X keeps f32 and a dtype_momentum); all reductions and per-step
//     scalars (b2t, means, RMS) in f64, elementwise math in the param dtype.
//  6. clip_threshold <= 0 disables update clipping (T5X: None).
// Momentum note: like T5X (and the Hugging Face / fairseq ports) the momentum
// averages the scaled update lr * scale * u, so a changing lr enters m. This
// equals m = b1 m + (1 - b1) u followed by p -= lr * scale * m only while
// lr * scale is constant.
//
// State per parameter, in this order: "row" [..., R] and "col" [..., C]
// (factored) or "v" [shape] (unfactored), then "exp_avg" [shape] when
// adafactor_beta1 > 0. Memory: (R + C) per slice instead of Adam's 2 R C.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "optim/optimizer.h"

namespace sb {

class Adafactor : public Optimizer {
 public:
  // Uses config.{adafactor_*, weight_decay, decay_norms, decay_embeddings};
  // params must outlive the optimizer.
  Adafactor(const switchboard::OptimizerConfig& config, std::vector<Parameter*> params);

  void Step(double lr) override;
  int64_t step() const override { return step_; }
  std::vector<std::pair<std::string, Tensor>> State() override;
  void set_step(int64_t step) override;

 private:
  struct Slot {
    Parameter* param;
    double weight_decay;  // config.weight_decay() or 0 (UsesWeightDecay)
    bool factored;        // param has >= 2 dims
    Tensor row;           // factored: [..., R] running mean over the last dim
    Tensor col;           // factored: [..., C] running mean over dim -2
    Tensor v;             // unfactored: param shape
    Tensor exp_avg;       // momentum (beta1 > 0): param shape
  };
  switchboard::OptimizerConfig config_;
  std::vector<Slot> slots_;
  int64_t step_ = 0;
};

}  // namespace sb
