// Incremental decoding of one sequence with a key/value cache: the forward
// pass of a Model (same weights, same ops) for the newest tokens only, the
// keys and values of earlier positions kept per block. What `generate`
// runs; `upcycle --router_prompts` uses it to read the residual stream
// entering each block. Weights are found by name in Model::Parameters()
// (the model must outlive the decoder); MoE blocks run their MoeLayer in
// evaluation mode (capacity_factor_eval: build the model dropless, as
// generate does, so that the prompt's routing does not depend on its length).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moe/model.h"

namespace sb {

class Decoder {
 public:
  // max_len: positions the cache holds (<= the model's max_seq_len).
  Decoder(Model& model, int64_t max_len);

  // Runs `tokens` at positions [length(), length() + n) and returns their
  // logits [n, V] (a fresh tensor). When block_inputs is not null it
  // receives, per block, the residual stream entering it [n, D] (copies).
  Tensor Append(const std::vector<int32_t>& tokens, std::vector<Tensor>* block_inputs = nullptr);
  int64_t length() const { return length_; }
  int64_t max_len() const { return max_len_; }
  // Forgets the sequence (the cache is reused).
  void Reset() { length_ = 0; }

 private:
  struct Block {
    const Tensor* input_norm = nullptr;
    const Tensor* post_norm = nullptr;
    const Tensor *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
    const Tensor *gate = nullptr, *up = nullptr, *down = nullptr;  // dense FFN
    MoeLayer* moe = nullptr;                                       // or MoE
    Tensor k_cache, v_cache;                                       // [max_len, Hkv*hd]
  };
  Tensor Norm(const Tensor& x, const Tensor& w) const;

  ModelOptions options_;
  int64_t max_len_;
  int64_t length_ = 0;
  std::vector<Block> blocks_;
  const Tensor* embedding_ = nullptr;
  const Tensor* final_norm_ = nullptr;
  const Tensor* head_ = nullptr;
  Tensor rope_cos_, rope_sin_;  // [max_len, hd/2]
};

}  // namespace sb
