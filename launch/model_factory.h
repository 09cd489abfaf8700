// Builds the model that a TrainConfig describes.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

#include "configs/config.h"
#include "moe/model.h"

namespace sb {

// The architecture and routing options of `config` (already validated).
ModelOptions ModelOptionsFromConfig(const TrainConfig& config);

// A model for `config` (validated for a world of one) in `dtype` on the CPU,
// with weights from a Hugging Face-named safetensors file, directory or
// index, or a Hugging Face model directory (config.json; Mixtral's fused
// transformers 5 layout too), whose config.json must agree with `config`.
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const TrainConfig& config,
                                                 const std::string& weights_path, DType dtype);

// Reads integer tensor `name` [B, S + 1] (I32 or I64) and splits it into
// inputs = [:, :-1] and targets = [:, 1:], both [B, S] i32.
absl::Status ReadTokenBatch(const std::string& path, const std::string& name, Tensor* inputs,
                            Tensor* targets);

// FLOPs of one forward+backward pass per token counting only active
// parameters (top-k experts), attention scores and the LM head, Megatron's
// convention: 6 * N_active + 12 * layers * d_model * seq_len (causal halving
// not applied, as Megatron and PaLM report).
double TrainFlopsPerToken(const ModelOptions& options, int seq_len);

// Parameters that one token's forward pass touches (Mixtral's "active
// parameters"): every non-expert parameter, embedding and LM head included,
// and top_k experts in each MoE block. Never more than the total (equal when
// top_k = num_experts) and independent of seq_len.
double ActiveParametersPerToken(const ModelOptions& options);

}  // namespace sb
