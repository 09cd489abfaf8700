// AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization",
// Algorithm 2) exactly as PyTorch's torch.optim.AdamW computes it
// (amsgrad=False, maximize=False; the single-tensor path of
// torch/optim/adamw.py), per parameter element, with t = 1, 2, ...:
//
//   p   *= 1 - lr * wd                    (decoupled decay, only where
//                                          UsesWeightDecay; wd = 0 elsewhere)
//   m    = m + (1 - b1) * (g - m)         (= b1 m + (1 - b1) g; PyTorch's lerp_)
//   v    = b2 v + (1 - b2) g^2
//   p   -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//
// Scalars (bias corrections, step size) are computed in f64 like PyTorch's
// Python floats and rounded once to the parameter dtype; the elementwise
// arithmetic runs in the parameter dtype (f32 or f64) in PyTorch's order.
// State m ("exp_avg") and v ("exp_avg_sq") has the parameter's shape and
// dtype, is zero at construction, and costs 2x the parameter memory.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "optim/optimizer.h"

namespace sb {

class AdamW : public Optimizer {
 public:
  // Uses config.{beta1, beta2, eps, weight_decay, decay_norms,
  // decay_embeddings}; params must outlive the optimizer.
  AdamW(const switchboard::OptimizerConfig& config, std::vector<Parameter*> params);

  void Step(double lr) override;
  int64_t step() const override { return step_; }
  // Per parameter, in construction order: "<name>.exp_avg", "<name>.exp_avg_sq".
  std::vector<std::pair<std::string, Tensor>> State() override;
  void set_step(int64_t step) override;

 private:
  struct Slot {
    Parameter* param;
    double weight_decay;  // config.weight_decay() or 0 (UsesWeightDecay)
    Tensor exp_avg;       // m, param shape and dtype
    Tensor exp_avg_sq;    // v, param shape and dtype
  };
  double beta1_, beta2_, eps_;
  std::vector<Slot> slots_;
  int64_t step_ = 0;
};

}  // namespace sb
