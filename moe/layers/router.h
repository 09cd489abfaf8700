// The MoE router: fp32 logits = x W_r^T, softmax, top-k with raw (Switch) or
// renormalised (Mixtral) gates, capacity assignment, and the two router
// losses (Switch load balancing, ST-MoE z-loss). Routing variants: noisy
// top-k gating with Shazeer's CV loss, GShard's random second expert, V-MoE
// batch priority, expert choice, and the auxiliary-loss-free selection bias
// of DeepSeek-V3. Semantics and sources: docs/moe_semantics.md.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "moe/core/parameter.h"
#include "moe/layers/step_context.h"

namespace sb {

enum class RoutingMode {
  kTokenChoice,   // each token picks top_k experts
  kExpertChoice,  // each expert picks its top-C tokens (Zhou et al. 2022)
};

enum class BalanceLoss {
  kSwitch,            // E * sum_e f_e P_e (Switch eq. 4)
  kCvImportanceLoad,  // CV(Importance)^2 + CV(Load)^2 (Shazeer et al. 2017)
};

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
  // Routing variants (moe.* in configs/switchboard.proto).
  RoutingMode routing = RoutingMode::kTokenChoice;
  bool noisy_gating = false;             // adds gate_noise.weight
  BalanceLoss balance_loss = BalanceLoss::kSwitch;
  bool random_second_expert = false;     // GShard, training only, top-2
  bool batch_prioritized = false;        // V-MoE
  double aux_free_bias_rate = 0.0;       // > 0 adds gate.e_score_correction_bias
  // Options of the MoE layer around the router (it is built from this struct).
  int num_shared_experts = 0;            // DeepSeekMoE shared experts
  int64_t shared_expert_ffn_dim = 0;     // each; 0 = the routed experts' width
  double expert_dropout = 0.0;           // on the experts' hidden units, training only

  bool expert_choice() const { return routing == RoutingMode::kExpertChoice; }
};

// C = max(min_capacity, ceil(factor * k * tokens / E)); -1 (no limit) when factor <= 0.
int64_t ExpertCapacity(double factor, int top_k, int64_t tokens, int num_experts,
                       int64_t min_capacity);

// The routing decision for one micro-batch. Tensors live on the router's
// device. Token choice lists k choices per token; expert choice lists all E
// experts per token (column e = expert e) with slot -1 where e did not take
// the token, so the layer's permutation and dispatch are the same for both.
struct Routing {
  Tensor expert_ids;  // [T, k] (expert choice: [T, E]) i32, by descending prob
  Tensor gates;       // [T, k] gate weights (dropped choices still listed here)
  Tensor slots;       // [T, k] i32, position in the expert's buffer, -1 = dropped / not taken
  Tensor routed;      // [E] i32 choices per expert before dropping
  Tensor kept;        // [E] i32 choices per expert after dropping
  int64_t capacity = -1;
  int64_t choices_per_token() const { return expert_ids.dim(1); }
};

// Per-layer statistics of the last forward (host values).
struct RouterStats {
  double aux_loss = 0.0;        // E * sum_e f_e P_e (balanced = 1)
  double z_loss = 0.0;          // mean_t logsumexp(logits_t)^2
  // Token choice: choices dropped by capacity / (T k) (a skipped GShard second
  // choice is not dropped). Expert choice: tokens no expert took / T.
  double dropped_fraction = 0.0;
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
  // [T, E] router logits of the last Forward: the softmax's input (with
  // noisy gating, the noisy logits in training).
  const Tensor& logits() const { return logits_view_; }
  const RouterOptions& options() const { return options_; }

  // Auxiliary-loss-free balancing: bias_e += rate * sign(mean(load) - load_e),
  // load [E] = routed choices of one optimizer step summed over its
  // micro-batches and ranks (so every rank applies the same update).
  void UpdateSelectionBias(const double* load);
  // Non-trainable tensors saved with the weights (the selection bias).
  std::vector<Parameter*> Buffers();
  std::vector<Parameter*> Parameters();

  Parameter weight;  // [E, D] "...block_sparse_moe.gate.weight"
  // [E, D] "...block_sparse_moe.gate_noise.weight" (noisy gating), else null.
  std::unique_ptr<Parameter> noise_weight;
  // [E] "...block_sparse_moe.gate.e_score_correction_bias" (aux-free), else null.
  std::unique_ptr<Parameter> selection_bias;

 private:
  // Top-k (or expert choice), gates and slots from probs_.
  void Route(const StepContext& ctx, int layer_index, int64_t T);
  // The router losses' values and the drop statistics.
  void ComputeStats(int64_t T);
  uint64_t Key(const StepContext& ctx, int layer_index, uint64_t tag) const;

  RouterOptions options_;
  bool jittered_ = false;
  Routing routing_;
  RouterStats stats_;
  Tensor x_, logits_view_;  // x_: the input in the router's dtype
  ScratchTensor x_converted_, x_router_, noise_, logits_, probs_, lse_, topk_probs_, summary_;
  ScratchTensor expert_ids_, gates_, slots_, routed_, kept_, active_, order_;
  // Noisy gating: noise logits, normal draws, noise std, noisy logits.
  ScratchTensor noise_logits_, normal_, noise_std_, noisy_;
  ScratchTensor dtopk_, dprobs_, dlogits_, dx_router_, dgates_, dclean_, dnoise_std_;
  ScratchTensor dnoise_logits_;
};

// Load imbalance of one MoE layer: max_e load_e / mean_e load_e (1 = balanced;
// 0 when nothing was routed). load [E].
double LoadMaxOverMean(const double* load, int num_experts);

}  // namespace sb
