// The MoE router: fp32 logits = x W_r^T, softmax, top-k with raw (Switch) or
// renormalised (Mixtral) gates, capacity assignment, and the two router
// losses (Switch load balancing, ST-MoE z-loss). Semantics and sources:
// docs/moe_semantics.md.
#pragma once

#include <string>
#include <vector>

#include "moe/core/parameter.h"
#include "moe/layers/step_context.h"

namespace sb {

struct RouterOptions {
  int num_experts = 8;
  int top_k = 2;
  bool normalize_top_k = false;
  double jitter_eps = 0.0;             // 0: no jitter
  double capacity_factor_train = 1.25; // <= 0: dropless
  double capacity_factor_eval = 2.0;   // <= 0: dropless
  int64_t min_capacity = 4;
  double aux_loss_coef = 1e-2;
  double z_loss_coef = 1e-3;
};

// C = max(min_capacity, ceil(factor * k * tokens / E)); -1 (no limit) when factor <= 0.
int64_t ExpertCapacity(double factor, int top_k, int64_t tokens, int num_experts,
                       int64_t min_capacity);

// The routing decision for one micro-batch. Tensors live on the router's device.
struct Routing {
  Tensor expert_ids;  // [T, k] i32, by descending prob
  Tensor gates;       // [T, k] gate weights (dropped choices still listed here)
  Tensor slots;       // [T, k] i32, position in the expert's buffer, -1 = dropped
  Tensor routed;      // [E] i32 choices per expert before dropping
  Tensor kept;        // [E] i32 choices per expert after dropping
  int64_t capacity = -1;
};

// Per-layer statistics of the last forward (host values).
struct RouterStats {
  double aux_loss = 0.0;        // E * sum_e f_e P_e (balanced = 1)
  double z_loss = 0.0;          // mean_t logsumexp(logits_t)^2
  double dropped_fraction = 0.0;  // dropped choices / (T k)
  double entropy = 0.0;         // mean router entropy, nats
  std::vector<int64_t> routed;  // [E]
  std::vector<int64_t> kept;    // [E]
};

class Router {
 public:
  // prefix: "model.layers.3.block_sparse_moe."
  Router(const std::string& prefix, int64_t d_model, const RouterOptions& options, DType dtype,
         Device device);
  // x [T, D] (any float dtype; the router computes in its weight's dtype,
  // f32 next to bf16 activations); layer_index keys the jitter stream.
  const Routing& Forward(const Tensor& x, const StepContext& ctx, int layer_index);
  // dgates [T, k] (zero for dropped choices, the router's dtype); adds the
  // router's input gradient into dx [T, D] (x's dtype); weight.grad +=. Includes the router losses
  // weighted by their coefficients times loss_scale.
  void Backward(const Tensor& dgates, double loss_scale, const Tensor& dx);
  const RouterStats& stats() const { return stats_; }
  // The routing decision of the last Forward.
  const Routing& routing() const { return routing_; }
  // [T, E] router logits of the last Forward (before softmax).
  const Tensor& logits() const { return logits_view_; }
  const RouterOptions& options() const { return options_; }

  Parameter weight;  // [E, D] "...block_sparse_moe.gate.weight"

 private:
  RouterOptions options_;
  bool jittered_ = false;
  Routing routing_;
  RouterStats stats_;
  Tensor x_, logits_view_;  // x_: the input in the router's dtype
  ScratchTensor x_converted_, x_router_, noise_, logits_, probs_, lse_, topk_probs_, summary_;
  ScratchTensor expert_ids_, gates_, slots_, routed_, kept_;
  ScratchTensor dtopk_, dprobs_, dlogits_, dx_router_;
};

}  // namespace sb
