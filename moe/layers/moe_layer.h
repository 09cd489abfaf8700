// The mixture-of-experts feed-forward (Switch / ST-MoE / Mixtral):
//   y_t = sum over kept choices (t, e) of gate_te * SwiGLU_e(x_t)
//         (+ SharedSwiGLU(x_t) with DeepSeekMoE shared experts)
// Forward: route -> permute rows to expert order -> dispatch to expert ranks
// -> experts -> combine back -> weighted un-permute. Dropped choices add
// nothing; the decoder's residual carries the token. See docs/moe_semantics.md.
#pragma once

#include <memory>
#include <string>

#include "moe/layers/dense_ffn.h"
#include "moe/layers/experts.h"
#include "moe/layers/feed_forward.h"
#include "moe/layers/router.h"
#include "moe/layers/token_dispatcher.h"

namespace sb {

class MoeLayer : public FeedForward {
 public:
  // prefix: "model.layers.3.block_sparse_moe."; dispatcher is shared by the
  // model's MoE layers and must outlive them. Local experts are
  // [ep_rank * E / ep, (ep_rank + 1) * E / ep).
  MoeLayer(const std::string& prefix, int layer_index, int64_t d_model, int64_t expert_ffn_dim,
           const RouterOptions& options, TokenDispatcher* dispatcher, DType dtype, Device device);
  Tensor Forward(const Tensor& x, const StepContext& ctx) override;
  Tensor Backward(const Tensor& dy, double loss_scale) override;
  std::vector<Parameter*> Parameters() override;
  const RouterStats& stats() const { return router_.stats(); }
  int layer_index() const { return layer_index_; }

  Router& router() { return router_; }
  Experts& experts() { return experts_; }
  // The always-on shared experts (DeepSeekMoE), or null.
  DenseFfn* shared_experts() { return shared_.get(); }

 private:
  int layer_index_;
  TokenDispatcher* dispatcher_;
  Router router_;
  Experts experts_;
  std::unique_ptr<DenseFfn> shared_;
  DispatchPlan plan_;
  Tensor x_;
  ScratchTensor row_token_, row_choice_, row_gate_;  // [N] permutation and gates
  ScratchTensor row_keys_, local_keys_;               // expert dropout keys [N, 4]
  ScratchTensor x_perm_, x_local_, y_perm_, y_;
  Tensor y_perm_view_;  // [N, D] expert outputs in send order: y_perm_, or the experts' own buffer
  ScratchTensor dgate_rows_, dgates_, dy_perm_, dy_local_, dx_perm_, dx_;
};

}  // namespace sb
