#include "moe/layers/transformer_block.h"

#include <string>

#include "moe/core/phase_timer.h"
#include "moe/ops/ops.h"

namespace sb {

TransformerBlock::TransformerBlock(int index, const AttentionShape& attn, double norm_eps,
                                   std::unique_ptr<FeedForward> ffn, DType dtype, Device device)
    : input_norm_("model.layers." + std::to_string(index) + ".input_layernorm.weight",
                  attn.d_model, norm_eps, dtype, device),
      attention_("model.layers." + std::to_string(index) + ".self_attn.", attn, dtype, device),
      post_attention_norm_(
          "model.layers." + std::to_string(index) + ".post_attention_layernorm.weight",
          attn.d_model, norm_eps, dtype, device),
      ffn_(std::move(ffn)) {}

std::vector<Parameter*> TransformerBlock::Parameters() {
  std::vector<Parameter*> params = {&input_norm_.weight, &attention_.q_proj, &attention_.k_proj,
                                    &attention_.v_proj, &attention_.o_proj,
                                    &post_attention_norm_.weight};
  for (Parameter* p : ffn_->Parameters()) params.push_back(p);
  return params;
}

void TransformerBlock::RunLayers(const Tensor& x, int seq_len, const StepContext& ctx,
                                 const Tensor& out) {
  ScratchArena::Scope scope(forward_arena_);
  Tensor h = h_.Get(x.shape(), x.dtype(), x.device());
  Tensor normed = Timed(Phase::kNorm, [&] { return input_norm_.Forward(x); });
  ops::Add(x, Timed(Phase::kAttention, [&] { return attention_.Forward(normed, seq_len); }), h);
  normed = Timed(Phase::kNorm, [&] { return post_attention_norm_.Forward(h); });
  ops::Add(h, ffn_->Forward(normed, ctx), out);
}

Tensor TransformerBlock::Forward(const Tensor& x, int seq_len, const StepContext& ctx) {
  Tensor out = out_.Get(x.shape(), x.dtype(), x.device());
  if (forward_arena_) {
    x_ = x;
    seq_len_ = seq_len;
    ctx_ = ctx;
  }
  RunLayers(x, seq_len, ctx, out);
  return out;
}

Tensor TransformerBlock::Backward(const Tensor& dout, double loss_scale) {
  // Recomputation: the same inputs, jitter keys and routing give the same
  // activations (and write the same output again).
  if (forward_arena_) RunLayers(x_, seq_len_, ctx_, out_.Get(x_.shape(), x_.dtype(), x_.device()));
  Tensor dx = dx_.Get(dout.shape(), dout.dtype(), dout.device());
  ScratchArena::Scope scope(backward_arena_);
  Tensor dh = dh_.Get(dout.shape(), dout.dtype(), dout.device());
  const Tensor dffn = ffn_->Backward(dout, loss_scale);
  ops::Add(dout, Timed(Phase::kNorm, [&] { return post_attention_norm_.Backward(dffn); }), dh);
  const Tensor dattn = Timed(Phase::kAttention, [&] { return attention_.Backward(dh); });
  ops::Add(dh, Timed(Phase::kNorm, [&] { return input_norm_.Backward(dattn); }), dx);
  return dx;
}

}  // namespace sb
