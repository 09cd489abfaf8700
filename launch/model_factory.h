// Builds the model that a TrainConfig describes.
#pragma once

#include <memory>

#include "configs/config.h"
#include "moe/model.h"

namespace sb {

// The architecture and routing options of `config` (already validated).
ModelOptions ModelOptionsFromConfig(const TrainConfig& config);

// FLOPs of one forward+backward pass per token counting only active
// parameters (top-k experts), attention scores and the LM head, Megatron's
// convention: 6 * N_active + 12 * layers * d_model * seq_len (causal halving
// not applied, as Megatron and PaLM report).
double TrainFlopsPerToken(const ModelOptions& options, int seq_len);

}  // namespace sb
