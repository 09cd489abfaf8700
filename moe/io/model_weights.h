// A Model's weights as Hugging Face names them (Llama / Mixtral), one tensor
// per name. Expert stacks [E_local, a, b] are split into one [a, b] tensor
// per expert under its global id (SliceName), so a file saved by any
// expert-parallel layout loads into any other. See docs/formats.md.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moe/io/safetensors_set.h"
#include "moe/model.h"

namespace sb {

enum class WeightSelection {
  kAll,         // every tensor of this model (rank)
  kReplicated,  // non-expert tensors only (one rank writes these)
  kExperts,     // this rank's expert slices only
};

// (HF name, view of the model's memory): expert slices are views into their
// stack, so writing into them writes the model.
std::vector<std::pair<std::string, Tensor>> NamedModelWeights(
    Model& model, WeightSelection selection = WeightSelection::kAll);

struct SaveWeightsOptions {
  std::map<std::string, std::string> metadata;    // "format": "pt" is added when absent
  std::optional<SafetensorsDType> float_storage;  // nullopt: the model's dtype
  WeightSelection selection = WeightSelection::kAll;
  SafetensorsChecksums checksums = SafetensorsChecksums::kNone;  // kXxh3: checkpoints
};

// Writes the selected weights to one .safetensors file (atomically).
absl::Status SaveModelWeights(Model& model, const std::string& path,
                              const SaveWeightsOptions& options = {});

struct LoadWeightsOptions {
  // Names in the file that the model has no use for are an error unless set.
  // Hugging Face Llama checkpoints written by transformers < 4.31 carry
  // model.layers.N.self_attn.rotary_emb.inv_freq buffers: load those with
  // allow_extra (we recompute RoPE tables from rope_theta). Experts of other
  // expert-parallel ranks (global ids in [0, num_experts) outside this
  // rank's range) are never extra.
  bool allow_extra = false;
};

// Fills every parameter (every local expert slice) from `weights` (a
// SafetensorsSet, an HfCheckpoint, ...). All names
// and shapes are checked before anything is written, so a failed load leaves
// the model as it was; the error lists the first missing, mis-shaped,
// unconvertible and unexpected names. Float dtypes are converted.
absl::Status LoadModelWeights(Model& model, const WeightReader& weights,
                              const LoadWeightsOptions& options = {});

}  // namespace sb
