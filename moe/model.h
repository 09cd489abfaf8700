// The decoder-only MoE language model (Llama / Mixtral architecture):
// embedding -> blocks (dense or MoE FFN) -> RMSNorm -> LM head -> cross-entropy.
// Explicit Forward and Backward (llm.c style); parameter names are Hugging
// Face's, so HF checkpoints load and export without renaming tables.
#pragma once

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

  // [T, V] logits of the last Forward (valid until the next Backward).
  const Tensor& logits() const { return logits_; }
  // Trainable tensors (what the optimizer, clipping and gradient sync see).
  std::vector<Parameter*> Parameters();
  // Non-trainable state saved with the weights: the auxiliary-loss-free
  // selection biases (replicated on every rank; their grad is unused).
  std::vector<Parameter*> Buffers();
  // Parameters() then Buffers(): every tensor of a weights file.
  std::vector<Parameter*> WeightTensors();
  std::vector<MoeLayer*> MoeLayers();
  // Routed choices per expert of the last Forward, MoE layers concatenated
  // ([num MoE layers * E], block order).
  std::vector<double> RoutedCounts();
  // Auxiliary-loss-free balancing after an optimizer step: each MoE layer's
  // selection bias moves by its load, `step_load` laid out as RoutedCounts()
  // and summed over the step's micro-batches and ranks. No-op when off.
  void UpdateSelectionBiases(const std::vector<double>& step_load);
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
};

// Mean over MoE layers of LoadMaxOverMean, `load` laid out as
// Model::RoutedCounts() (0 without MoE layers).
double MeanLoadImbalance(const std::vector<double>& load, int num_experts);
// Largest |selection bias| of the model's MoE layers (0 when none has one).
double SelectionBiasAbsMax(Model& model);

}  // namespace sb
