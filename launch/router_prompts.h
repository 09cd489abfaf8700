// Router initialisation from hidden states (the frankenMoE recipe of
// mergekit-moe's default "hidden" gate mode): for expert e and MoE block l,
//   r[l][e] = normalise( mean over e's positive prompts p of h_l(p)
//                        - mean over e's negative prompts p of h_l(p) )
// where h_l(p) is the residual stream entering block l at p's last token,
// computed by the dense base model, and normalise divides by the L2 norm
// (at least 1e-8). The router weight of block l is then rows r[l][0..E).
//
// --router_prompts FILE is JSON (docs/upcycling.md):
//   {"prepend_bos": true,                      optional; mergekit prepends BOS
//    "experts": [                              one entry per expert, in order
//      {"positive_prompts": ["...", ...],      at least one
//       "negative_prompts": ["...", ...]},     optional
//      ...]}
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "moe/model.h"

namespace sb {

struct ExpertPrompts {
  std::vector<std::string> positive;
  std::vector<std::string> negative;
};

struct RouterPrompts {
  bool prepend_bos = true;
  std::vector<ExpertPrompts> experts;
};

// Parses FILE; it must list exactly num_experts experts, each with at least
// one positive prompt. Errors name the file and the entry.
absl::StatusOr<RouterPrompts> ReadRouterPrompts(const std::string& path, int num_experts);

// h_l(p) for each prompt: [num_layers, D] (f64) per prompt, run by `dense`
// (any dtype) with the KV-cache decoder. Prompts must be non-empty and fit
// model.max_seq_len.
absl::StatusOr<std::vector<Tensor>> LastTokenStates(Model& dense,
                                                    const std::vector<std::vector<int32_t>>& prompts);

// Router weights [E, D] (f64) for each block, from each expert's positive and
// negative prompt states (LastTokenStates outputs).
std::vector<Tensor> RouterRowsFromStates(const std::vector<std::vector<Tensor>>& positive,
                                         const std::vector<std::vector<Tensor>>& negative);

// The whole recipe: tokenises the prompts with `tokenizer_path`, runs
// `dense` and returns per block [E, D] router rows.
absl::StatusOr<std::vector<Tensor>> RouterRowsFromPrompts(Model& dense, const RouterPrompts& prompts,
                                                          const std::string& tokenizer_path);

}  // namespace sb
