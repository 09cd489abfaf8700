// The SwiGLU MLP y = W2 (silu(W1 x) * (W3 x)) (Shazeer 2020), shared by the
// dense FFN and by every expert. HF names: gate_proj = W1, up_proj = W3,
// down_proj = W2 (Mixtral experts: w1, w3, w2).
#pragma once

#include <utility>

#include "moe/core/tensor.h"

namespace sb {

// Activations of one MLP call, kept for backward.
struct SwigluActivations {
  SwigluActivations(Tensor gate_, Tensor up_, Tensor act_)
      : gate(std::move(gate_)), up(std::move(up_)), act(std::move(act_)) {}
  Tensor gate;  // [N, F] = x W1^T
  Tensor up;    // [N, F] = x W3^T
  Tensor act;   // [N, F] = silu(gate) * up (after dropout, when on)
  // Expert dropout (Switch / ST-MoE) on act: row keys [N, 4] from
  // ops::ExpertRowKeys; undefined means no dropout.
  Tensor dropout_keys;
  double dropout_rate = 0.0;
};

// x [N, D]; w1, w3 [F, D]; w2 [D, F]; y [N, D] (overwritten).
void SwigluMlpForward(const Tensor& x, const Tensor& w1, const Tensor& w3, const Tensor& w2,
                      const SwigluActivations& acts, const Tensor& y);
// dy [N, D] -> dx [N, D] (overwritten); dw1, dw3, dw2 (+=). scratch_dgate and
// scratch_dup are [N, F] buffers.
void SwigluMlpBackward(const Tensor& x, const Tensor& w1, const Tensor& w3, const Tensor& w2,
                       const SwigluActivations& acts, const Tensor& dy, const Tensor& dw1,
                       const Tensor& dw3, const Tensor& dw2, const Tensor& dx,
                       const Tensor& scratch_dgate, const Tensor& scratch_dup);

}  // namespace sb
