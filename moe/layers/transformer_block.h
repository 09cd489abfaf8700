// One pre-norm decoder block as in Llama / Mixtral:
//   h = x + Attention(RMSNorm(x));  out = h + FFN(RMSNorm(h))
// where FFN is a dense SwiGLU MLP or an MoE layer.
#pragma once

#include <memory>
#include <vector>

#include "moe/layers/attention.h"
#include "moe/layers/feed_forward.h"
#include "moe/layers/moe_layer.h"
#include "moe/layers/rmsnorm.h"

namespace sb {

class TransformerBlock {
 public:
  // Takes ownership of ffn; `moe` is ffn when it is an MoE layer, else null.
  TransformerBlock(int index, const AttentionShape& attn, double norm_eps,
                   std::unique_ptr<FeedForward> ffn, DType dtype, Device device);
  // x [T, D] -> [T, D]
  Tensor Forward(const Tensor& x, int seq_len, const StepContext& ctx);
  // dout [T, D] -> dx [T, D]
  Tensor Backward(const Tensor& dout, double loss_scale);
  // Activation recomputation (docs/cuda.md, "Memory"): the block keeps only
  // its input and output; its layers' buffers live in `forward` and
  // `backward` (shared by every recomputing block of the same kind), and
  // Backward first runs Forward again. Null arenas: keep everything.
  void set_recompute(ScratchArena* forward, ScratchArena* backward) {
    forward_arena_ = forward;
    backward_arena_ = backward;
  }
  std::vector<Parameter*> Parameters();
  // The MoE layer of this block, or null when its FFN is dense.
  MoeLayer* moe() { return dynamic_cast<MoeLayer*>(ffn_.get()); }
  FeedForward& ffn() { return *ffn_; }
  Attention& attention() { return attention_; }

 private:
  RmsNorm input_norm_;
  Attention attention_;
  RmsNorm post_attention_norm_;
  std::unique_ptr<FeedForward> ffn_;
  // The block's layers between input and output (in the forward arena
  // when recomputing).
  void RunLayers(const Tensor& x, int seq_len, const StepContext& ctx, const Tensor& out);

  ScratchArena* forward_arena_ = nullptr;
  ScratchArena* backward_arena_ = nullptr;
  Tensor x_;  // the input, kept for recomputation
  int seq_len_ = 0;
  StepContext ctx_;
  // out_ and dx_ are the block's boundaries (the next block's input, the
  // previous block's output gradient): never in an arena.
  ScratchTensor h_, out_, dh_, dx_;
};

}  // namespace sb
