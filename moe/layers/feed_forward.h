// The position-wise sublayer of a decoder block: dense SwiGLU or MoE.
#pragma once

#include <vector>

#include "moe/core/parameter.h"
#include "moe/layers/step_context.h"

namespace sb {

class FeedForward {
 public:
  virtual ~FeedForward() = default;
  // x [T, D] -> [T, D]
  virtual Tensor Forward(const Tensor& x, const StepContext& ctx) = 0;
  // dy [T, D] -> dx [T, D]. loss_scale is this micro-batch's weight in the
  // step's total loss (1 / micro-batches); router losses need it.
  virtual Tensor Backward(const Tensor& dy, double loss_scale) = 0;
  virtual std::vector<Parameter*> Parameters() = 0;
};

}  // namespace sb
