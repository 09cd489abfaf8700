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
  // Tokens per chunk of the fused LM head + cross-entropy (whose [chunk, V]
  // logits are the only logits a training step holds); 0 picks about 8 MiB
  // of logits per chunk on the CPU and 256 MiB on a GPU.
  int64_t lm_head_chunk_tokens = 0;
  // Recompute every block's activations in backward (TransformerBlock::set_recompute).
  bool activation_recompute = false;
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
  // all MoE layers and must outlive the model. Parameters (and their
  // gradients) are `dtype` on `device`.
  Model(const ModelOptions& options, TokenDispatcher* dispatcher, DType dtype, Device device);
  // Mixed precision: parameters keep `dtype` (the f32 master weights that
  // the optimizer updates and checkpoints save) and every one but the
  // routers' also gets a `compute_dtype` copy (bf16) that the layers read;
  // activations are compute_dtype, statistics, router and losses f32.
  Model(const ModelOptions& options, TokenDispatcher* dispatcher, DType dtype, Device device,
        DType compute_dtype);
  const ModelOptions& options() const { return options_; }
  Device device() const { return device_; }
  DType compute_dtype() const { return compute_dtype_; }

  // Normal(0, init_std) weights, unit norms; keyed by (seed, name, expert id).
  void InitWeights(uint64_t seed);
  // Rounds every parameter's value into its compute copy: call after
  // anything writes parameter values (optimizer step, weight loading).
  void RefreshComputeCopies();
  // inputs, targets [B, S] i32 (targets < 0 ignored), on the host or the
  // model's device (host batches are copied) -> losses of this micro-batch.
  // In training mode (ctx.training) the LM head's gradient is computed here
  // too, with its logits (ops::LmHeadCrossEntropy), for Backward to apply.
  ForwardResult Forward(const Tensor& inputs, const Tensor& targets, const StepContext& ctx);
  // Adds d(loss_scale * total_loss)/dparam into every parameter's grad.
  // Needs a training-mode Forward before it.
  void Backward(double loss_scale);
  void ZeroGrad();
  // Called during Backward with the parameters whose gradients that pass has
  // finished, in the order it finishes them: LM head and final norm, each
  // block from last to first, the embedding (which a tied head also writes).
  // Gradient synchronisation starts all-reducing them early
  // (parallel/grad_sync.h); every parameter is reported once per pass.
  using BackwardObserver = std::function<void(const std::vector<Parameter*>& finished)>;
  void set_backward_observer(BackwardObserver observer) { backward_observer_ = std::move(observer); }

  // [T, V] logits of the last Forward (AccumDType), computed on first use
  // (training never materialises them); valid until the next Forward.
  const Tensor& logits();
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
  const Parameter& head() const { return lm_head_ ? *lm_head_ : embedding_.weight; }
  int64_t LmHeadChunkTokens() const;

  ModelOptions options_;
  Device device_;
  DType compute_dtype_;
  LocalDispatcher local_dispatcher_;
  Embedding embedding_;
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  RmsNorm final_norm_;
  std::unique_ptr<Parameter> lm_head_;  // null when tied to the embedding
  Tensor targets_, final_hidden_, logits_;
  bool logits_ready_ = false;
  // Set by a training Forward: the LM head's gradients for a loss scale of
  // 1, which Backward scales and applies.
  bool head_grads_ready_ = false;
  Tensor dhidden_, dhead_;
  ScratchArena forward_arena_, backward_arena_;  // activation recomputation
  int64_t valid_tokens_ = 0;
  ScratchTensor ids_device_, targets_device_, logits_buf_, losses_, dhidden_buf_, dhead_buf_;
  BackwardObserver backward_observer_;
};

// Mean over MoE layers of LoadMaxOverMean, `load` laid out as
// Model::RoutedCounts() (0 without MoE layers).
double MeanLoadImbalance(const std::vector<double>& load, int num_experts);
// Largest |selection bias| of the model's MoE layers (0 when none has one).
double SelectionBiasAbsMax(Model& model);

}  // namespace sb
