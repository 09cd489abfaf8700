// Hugging Face config.json <-> our TrainConfig (model and moe messages),
// and the architecture comparisons that upcycling, --init_from and export
// make. Conventions (docs/upcycling.md, "What maps to what"):
//   - Llama is a dense model (moe.moe_layer_interval = 0); Mixtral has an
//     MoE FFN in every block with renormalised top-k gates and no capacity
//     limit (HF never drops tokens): normalize_top_k, capacity factors 0.
//   - HF's router_aux_loss_coef weighs a loss pooled over all layers whose
//     balanced value is k; ours is summed over the L MoE layers with
//     balanced value 1 each, so hf_coef = our_coef * L / k (equal at balance).
//   - HF Mixtral has no z-loss (imported as 0; exported models lose it,
//     which is fine: it only shapes training).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "moe/io/hf_config.h"

namespace sb {

// The model and moe messages of an HF config (other messages default).
TrainConfig TrainConfigFromHf(const HfConfig& hf);

// The HF config that represents `config`'s model, or InvalidArgument naming
// every reason transformers cannot (raw top-k gates, a capacity limit at
// inference, dense and MoE blocks interleaved). dtype is config.json's
// "torch_dtype" ("float32" / "bfloat16"); token ids are left at -1.
absl::StatusOr<HfConfig> HfConfigFromTrainConfig(const TrainConfig& config,
                                                 const std::string& dtype);

// One line per architecture field (what decides tensor shapes and the
// computation: sizes, heads, RoPE base, norm epsilon, tied head, which blocks
// are MoE and how many experts) that differs between `a` and `b`, naming the
// field and both values: "model.d_model = 128 in <a_label>, 256 in <b_label>".
// When `hf_keys` is set the config.json key is named too.
std::vector<std::string> ArchitectureDiffs(const TrainConfig& a, const std::string& a_label,
                                           const TrainConfig& b, const std::string& b_label,
                                           bool hf_keys = false);

}  // namespace sb
