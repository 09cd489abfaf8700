// A Hugging Face config.json of a Llama (LlamaForCausalLM) or Mixtral
// (MixtralForCausalLM) model, as transformers 4.x and 5.x write it. Parsing
// is strict about everything that changes what the model computes: a
// feature we do not implement (biases, RoPE scaling, sliding windows, another
// activation, quantisation, a head_dim other than hidden_size / heads) is an
// error naming the key and its value, never silently ignored. Fields that
// only matter for training or serving in transformers (dropout,
// initializer_range, use_cache, router_jitter_noise, output_router_logits,
// pretraining_tp) are accepted and ignored. docs/upcycling.md lists the keys.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sb {

enum class HfArch { kLlama, kMixtral };
const char* HfArchName(HfArch arch);  // "llama" / "mixtral" (config.json's model_type)

struct HfConfig {
  HfArch arch = HfArch::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  // The dense FFN width (Llama) or each expert's (Mixtral).
  int64_t intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  // "float32", "bfloat16", "float16" (dtype / torch_dtype); "" when absent.
  std::string dtype;
  // Mixtral only.
  int num_local_experts = 0;
  int num_experts_per_tok = 0;
  // HF's load-balancing coefficient: its loss pools all layers and its
  // balanced value is num_experts_per_tok (docs/upcycling.md converts).
  double router_aux_loss_coef = 0.0;
  // -1 when absent or null (Llama 3 style lists keep their first id).
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;

  bool is_moe() const { return arch == HfArch::kMixtral; }
};

// Parses config.json text; `label` (the path) starts every error, which
// lists every problem found, one per "; ".
absl::StatusOr<HfConfig> ParseHfConfig(absl::string_view label, absl::string_view json_text);
absl::StatusOr<HfConfig> ReadHfConfig(const std::string& path);

// config.json for `config` (keys sorted, as transformers writes them): the
// transformers 4.x spelling (rope_theta, torch_dtype), which 5.x also reads.
std::string HfConfigJson(const HfConfig& config);

}  // namespace sb
