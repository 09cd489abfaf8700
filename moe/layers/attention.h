// Causal self-attention with grouped-query heads and rotary positions, laid
// out as Hugging Face LlamaAttention (q/k/v/o_proj, no biases, rotate-half
// RoPE) so that HF weights load unchanged.
#pragma once

#include <string>

#include "moe/core/parameter.h"

namespace sb {

struct AttentionShape {
  int64_t d_model = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;       // d_model / num_heads
  double rope_theta = 10000.0;
};

class Attention {
 public:
  // prefix: "model.layers.3.self_attn."
  Attention(const std::string& prefix, const AttentionShape& shape, DType dtype, Device device);
  // x [T, D] (T = batch * seq_len) -> [T, D]
  Tensor Forward(const Tensor& x, int seq_len);
  // dout [T, D] -> dx [T, D]; projection grads +=.
  Tensor Backward(const Tensor& dout);

  Parameter q_proj;  // [H*hd, D]
  Parameter k_proj;  // [Hkv*hd, D]
  Parameter v_proj;  // [Hkv*hd, D]
  Parameter o_proj;  // [D, H*hd]

 private:
  AttentionShape shape_;
  int seq_len_ = 0;
  Tensor x_;
  Tensor rope_cos_, rope_sin_;                 // [S, hd/2] (AccumDType)
  ScratchTensor q_, k_, v_, lse_, ctx_, out_;  // q, ctx [T, H*hd]; k, v [T, Hkv*hd]; lse [B, H, S]
  ScratchTensor dctx_, dq_, dk_, dv_, dx_;
};

}  // namespace sb
