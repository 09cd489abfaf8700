// A tiny model configuration shared by tests: 3 blocks (the last two can be
// MoE), 4 experts, vocab 11. Small enough for finite-difference checks of
// every parameter.
#pragma once

#include "moe/model.h"

namespace sb::testing {

inline ModelOptions SmallModelOptions(bool tie_embeddings) {
  ModelOptions o;
  o.vocab_size = 11;
  o.d_model = 8;
  o.num_layers = 3;
  o.num_heads = 2;
  o.num_kv_heads = 1;
  o.ffn_dim = 12;
  o.expert_ffn_dim = 6;
  o.max_seq_len = 16;
  o.tie_embeddings = tie_embeddings;
  o.router.num_experts = 4;
  o.router.top_k = 2;
  o.moe_layers = {false, true, true};
  return o;
}

}  // namespace sb::testing
