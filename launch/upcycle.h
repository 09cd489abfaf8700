// Sparse upcycling (Komatsuzaki et al. 2023) and MoE from several dense
// models (mergekit-moe's frankenMoE, Branch-Train-MiX): builds the MoE that
// a TrainConfig describes from a dense Hugging Face Llama directory.
//   - embeddings, attention, norms and the LM head are the base's (--from);
//   - in every MoE block, expert e is a copy of the dense FFN of the base or,
//     with --expert_from, of donor e (gate_proj -> w1, up_proj -> w3,
//     down_proj -> w2), plus optional relative noise (upcycle.expert_noise);
//   - dense blocks of an interleaved config keep the base's dense FFN;
//   - routers: upcycle.router_init (N(0, std^2) or zeros), or hidden states
//     of --router_prompts (launch/router_prompts.h).
// Every architecture disagreement between the dense model(s) and the config
// is an error naming the field and both values. docs/upcycling.md explains
// when the result computes exactly the dense model.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "moe/model.h"

namespace sb {

struct UpcycleOptions {
  std::string from;                      // the base: an HF Llama directory
  std::vector<std::string> expert_from;  // one donor per expert, or none
  std::string router_prompts;            // JSON file, or "" for upcycle.router_init
  std::string tokenizer;                 // for the prompts; "" = from/tokenizer.model
};

struct UpcycleResult {
  std::unique_ptr<Model> model;
  std::string tokenizer_path;       // the base's tokenizer.model, or ""
  std::vector<std::string> report;  // what was done, one line each
};

// `config` must be valid for one rank; `config_label` names it in errors.
absl::StatusOr<UpcycleResult> Upcycle(const TrainConfig& config, const std::string& config_label,
                                      const UpcycleOptions& options, DType dtype);

// Writes `out` (atomically; an existing directory only with overwrite):
// config.textproto (the resolved config), the weights (model.safetensors, or
// shards + index above max_shard_bytes) with `metadata`, and tokenizer.model
// when tokenizer_path is set. OpenModelSource reads it back.
absl::Status WriteWeightsDir(const std::string& out, Model& model, const TrainConfig& config,
                             const std::string& tokenizer_path,
                             const std::map<std::string, std::string>& metadata,
                             int64_t max_shard_bytes, bool overwrite);

}  // namespace sb
