// Dense SwiGLU feed-forward (HF LlamaMLP: gate_proj, up_proj, down_proj).
#pragma once

#include <string>

#include "moe/layers/feed_forward.h"
#include "moe/layers/swiglu_mlp.h"

namespace sb {

class DenseFfn : public FeedForward {
 public:
  // prefix: "model.layers.3.mlp."
  DenseFfn(const std::string& prefix, int64_t d_model, int64_t ffn_dim, DType dtype, Device device);
  Tensor Forward(const Tensor& x, const StepContext& ctx) override;
  Tensor Backward(const Tensor& dy, double loss_scale) override;
  std::vector<Parameter*> Parameters() override { return {&gate_proj, &up_proj, &down_proj}; }

  Parameter gate_proj;  // W1 [F, D]
  Parameter up_proj;    // W3 [F, D]
  Parameter down_proj;  // W2 [D, F]

 private:
  Tensor x_;
  ScratchTensor gate_, up_, act_, y_, dx_, dgate_, dup_;
};

}  // namespace sb
