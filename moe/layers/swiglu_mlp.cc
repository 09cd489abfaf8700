#include "moe/layers/swiglu_mlp.h"

#include "moe/ops/ops.h"

namespace sb {

void SwigluMlpForward(const Tensor& x, const Tensor& w1, const Tensor& w3, const Tensor& w2,
                      const SwigluActivations& acts, const Tensor& y) {
  ops::Gemm(x, false, w1, true, acts.gate);
  ops::Gemm(x, false, w3, true, acts.up);
  ops::SwigluForward(acts.gate, acts.up, acts.act);
  if (acts.dropout_keys.defined()) ops::KeyedDropout(acts.dropout_keys, acts.dropout_rate, acts.act);
  ops::Gemm(acts.act, false, w2, true, y);
}

void SwigluMlpBackward(const Tensor& x, const Tensor& w1, const Tensor& w3, const Tensor& w2,
                       const SwigluActivations& acts, const Tensor& dy, const Tensor& dw1,
                       const Tensor& dw3, const Tensor& dw2, const Tensor& dx,
                       const Tensor& scratch_dgate, const Tensor& scratch_dup) {
  // The [N, F] gradient of act reuses scratch_dup before dup is written.
  const Tensor& dact = scratch_dup;
  ops::Gemm(dy, false, w2, false, dact);
  ops::Gemm(dy, true, acts.act, false, dw2, 1.0, 1.0);
  // act = mask * silu(gate) * up: the same mask scales the gradient.
  if (acts.dropout_keys.defined()) ops::KeyedDropout(acts.dropout_keys, acts.dropout_rate, dact);
  // SwigluBackward reads dact fully per element before writing dup there.
  ops::SwigluBackward(acts.gate, acts.up, dact, scratch_dgate, scratch_dup);
  ops::Gemm(scratch_dgate, true, x, false, dw1, 1.0, 1.0);
  ops::Gemm(scratch_dup, true, x, false, dw3, 1.0, 1.0);
  ops::Gemm(scratch_dgate, false, w1, false, dx);
  ops::Gemm(scratch_dup, false, w3, false, dx, 1.0, 1.0);
}

}  // namespace sb
