// The decoder-only MoE language model (Llama / Mixtral architecture):
// embedding -> blocks (dense or MoE FFN) -> RMSNorm -> LM head -> cross-entropy.
// Explicit Forward and Backward (llm.c style); parameter names are Hugging
// Face's, so HF checkpoints load and export without renaming tables.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "moe/layers/embedding.h"
#include "moe/layers/rmsnorm.h"
#include "moe/layers/router.h"
#include "moe/layers/token_dispatcher.h"
#include "moe/layers/transformer_block.h"

namespace sb {

struct ModelOptions {
  int64_t vocab_size = 0;
  int64_t d_model = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int64_t ffn_dim = 0;         // dense layers
  int64_t expert_ffn_dim = 0;  // each expert
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  int64_t max_seq_len = 0;
  bool tie_embeddings = false;
  double init_std = 0.02;
  RouterOptions router;
  std::vector<bool> moe_layers;  // [num_layers]: true where the FFN is MoE
};

// What one forward pass measured.
struct ForwardResult {
  double loss = 0.0;           // mean cross-entropy over tokens with target >= 0
  double aux_loss = 0.0;       // sum over MoE layers of the load-balancing loss
  double z_loss = 0.0;         // sum over MoE layers of the router z-loss
  double total_loss = 0.0;     // loss + aux_coef * aux_loss + z_coef * z_loss
  int64_t tokens = 0;          // tokens with a target
  double dropped_fraction = 0.0;  // mean over MoE layers
};

class Model {
 public:
  // dispatcher: null for a single expert-parallel rank; otherwise shared by
  // all MoE layers and must outlive the model.
  Model(const ModelOptions& options, TokenDispatcher* dispatcher, DType dtype, Device device);
  const ModelOptions& options() const { return options_; }

  // Normal(0, init_std) weights, unit norms; keyed by (seed, name, expert id).
  void InitWeights(uint64_t seed);
  // inputs, targets [B, S] i32 (targets < 0 ignored) -> losses of this micro-batch.
  ForwardResult Forward(const Tensor& inputs, const Tensor& targets, const StepContext& ctx);
  // Adds d(loss_scale * total_loss)/dparam into every parameter's grad.
  void Backward(double loss_scale);
  void ZeroGrad();
  // Called during Backward with the parameters whose gradients that pass has
  // finished, in the order it finishes them: LM head and final norm, each
  // block from last to first, the embedding (which a tied head also writes).
  // Gradient synchronisation starts all-reducing them early
  // (parallel/grad_sync.h); every parameter is reported once per pass.
  using BackwardObserver = std::function<void(const std::vector<Parameter*>& finished)>;
  void set_backward_observer(BackwardObserver observer) { backward_observer_ = std::move(observer); }

  // [T, V] logits of the last Forward (valid until the next Backward).
  const Tensor& logits() const { return logits_; }
  std::vector<Parameter*> Parameters();
  std::vector<MoeLayer*> MoeLayers();
  int64_t NumParameters(bool count_all_experts = true) const;

 private:
  ModelOptions options_;
  LocalDispatcher local_dispatcher_;
  Embedding embedding_;
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  RmsNorm final_norm_;
  std::unique_ptr<Parameter> lm_head_;  // null when tied to the embedding
  Tensor targets_, final_hidden_, logits_;
  int64_t valid_tokens_ = 0;
  ScratchTensor logits_buf_, losses_, lse_, dhidden_;
  BackwardObserver backward_observer_;
};

}  // namespace sb
