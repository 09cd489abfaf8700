// switchboard export-hf: a model as a Hugging Face directory that
// transformers loads with from_pretrained: Mixtral (MixtralForCausalLM) for
// models with an MoE FFN in every block and renormalised top-k gates, Llama
// (LlamaForCausalLM) for dense models; anything else is refused with the
// reason (launch/hf_convert.h). Writes config.json, generation_config.json,
// the weights under the published names (model.safetensors, or shards +
// model.safetensors.index.json above the shard size) in float32 or
// bfloat16, and the tokenizer (tokenizer.model + tokenizer_config.json).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "configs/config.h"
#include "moe/io/sharded_weights.h"
#include "moe/model.h"

namespace sb {

struct ExportHfOptions {
  std::string out;                  // created atomically
  std::string dtype = "float32";    // "float32" or "bfloat16"
  int64_t max_shard_bytes = kDefaultMaxShardBytes;
  bool add_bos_token = false;       // tokenizer_config.json: Switchboard data has no BOS
  bool overwrite = false;
};

absl::Status ExportHf(Model& model, const TrainConfig& config, const std::string& tokenizer_path,
                      const ExportHfOptions& options);

}  // namespace sb
