#include "moe/inference/decoder.h"

#include <map>

#include "moe/layers/swiglu_mlp.h"
#include "moe/ops/kv_attention.h"
#include "moe/ops/ops.h"

namespace sb {
namespace {

std::map<std::string, const Tensor*> WeightsByName(Model& model) {
  std::map<std::string, const Tensor*> out;
  for (Parameter* p : model.Parameters()) out[p->name] = &p->value;
  return out;
}

}  // namespace

Decoder::Decoder(Model& model, int64_t max_len)
    : options_(model.options()), max_len_(max_len) {
  const ModelOptions& o = options_;
  SB_CHECK(max_len >= 1 && max_len <= o.max_seq_len)
      << "decoder cache of " << max_len << " positions, model.max_seq_len " << o.max_seq_len;
  const std::map<std::string, const Tensor*> w = WeightsByName(model);
  auto get = [&](const std::string& name) {
    auto it = w.find(name);
    SB_CHECK(it != w.end()) << "the model has no parameter " << name;
    return it->second;
  };
  std::map<int, MoeLayer*> moe;
  for (MoeLayer* layer : model.MoeLayers()) moe[layer->layer_index()] = layer;
  embedding_ = get("model.embed_tokens.weight");
  final_norm_ = get("model.norm.weight");
  head_ = o.tie_embeddings ? embedding_ : get("lm_head.weight");
  const DType dt = embedding_->dtype();
  const Device dev = embedding_->device();
  const int64_t hd = o.d_model / o.num_heads, kw = o.num_kv_heads * hd;
  for (int i = 0; i < o.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Block b;
    b.input_norm = get(p + "input_layernorm.weight");
    b.post_norm = get(p + "post_attention_layernorm.weight");
    b.q = get(p + "self_attn.q_proj.weight");
    b.k = get(p + "self_attn.k_proj.weight");
    b.v = get(p + "self_attn.v_proj.weight");
    b.o = get(p + "self_attn.o_proj.weight");
    if (o.moe_layers[i]) {
      SB_CHECK(moe.count(i)) << "block " << i << " has no MoE layer";
      b.moe = moe[i];
    } else {
      b.gate = get(p + "mlp.gate_proj.weight");
      b.up = get(p + "mlp.up_proj.weight");
      b.down = get(p + "mlp.down_proj.weight");
    }
    b.k_cache = Tensor::Empty({max_len, kw}, dt, dev);
    b.v_cache = Tensor::Empty({max_len, kw}, dt, dev);
    blocks_.push_back(std::move(b));
  }
  // RoPE tables for every cached position, computed once (as Attention does).
  Tensor c = Tensor::Empty({max_len, hd / 2}, dt), s = Tensor::Empty({max_len, hd / 2}, dt);
  ops::RopeTables(static_cast<int>(max_len), static_cast<int>(hd), o.rope_theta, c, s);
  rope_cos_ = Tensor::Empty(c.shape(), dt, dev);
  rope_sin_ = Tensor::Empty(s.shape(), dt, dev);
  ops::Copy(c, rope_cos_);
  ops::Copy(s, rope_sin_);
}

Tensor Decoder::Norm(const Tensor& x, const Tensor& w) const {
  Tensor y = Tensor::Empty(x.shape(), x.dtype(), x.device());
  Tensor rstd = Tensor::Empty({x.dim(0)}, x.dtype(), x.device());
  ops::RmsNormForward(x, w, options_.norm_eps, y, rstd);
  return y;
}

Tensor Decoder::Append(const std::vector<int32_t>& tokens, std::vector<Tensor>* block_inputs) {
  const ModelOptions& o = options_;
  const int64_t n = static_cast<int64_t>(tokens.size()), pos = length_;
  SB_CHECK(n >= 1 && pos + n <= max_len_)
      << "decoder: " << n << " tokens at position " << pos << " exceed the cache of " << max_len_;
  const DType dt = embedding_->dtype();
  const Device dev = embedding_->device();
  const int64_t D = o.d_model, hd = D / o.num_heads, qw = o.num_heads * hd, kw = o.num_kv_heads * hd;
  Tensor ids = Tensor::Empty({n}, DType::kI32, dev);
  ops::Copy(Tensor::FromVector(tokens, {n}), ids);
  Tensor x = Tensor::Empty({n, D}, dt, dev);
  ops::EmbeddingForward(ids, *embedding_, x);
  const Tensor cos = rope_cos_.Rows(pos, pos + n), sin = rope_sin_.Rows(pos, pos + n);
  StepContext eval;
  eval.training = false;
  if (block_inputs) block_inputs->clear();
  for (Block& b : blocks_) {
    if (block_inputs) {
      block_inputs->push_back(Tensor::Empty(x.shape(), dt, dev));
      ops::Copy(x, block_inputs->back());
    }
    // h = x + Attention(RMSNorm(x)), attending over the cache.
    const Tensor xn = Norm(x, *b.input_norm);
    Tensor q = Tensor::Empty({n, qw}, dt, dev), k = Tensor::Empty({n, kw}, dt, dev),
           v = Tensor::Empty({n, kw}, dt, dev);
    ops::Gemm(xn, false, *b.q, true, q);
    ops::Gemm(xn, false, *b.k, true, k);
    ops::Gemm(xn, false, *b.v, true, v);
    // Row t of the n new tokens is position pos + t: the tables' rows from pos.
    ops::Rope(q, cos, sin, static_cast<int>(n), /*inverse=*/false);
    ops::Rope(k, cos, sin, static_cast<int>(n), /*inverse=*/false);
    ops::Copy(k, b.k_cache.Rows(pos, pos + n));
    ops::Copy(v, b.v_cache.Rows(pos, pos + n));
    Tensor ctx = Tensor::Empty({n, qw}, dt, dev);
    ops::CachedAttentionForward(q, b.k_cache.Rows(0, pos + n), b.v_cache.Rows(0, pos + n), pos,
                                o.num_heads, ctx);
    Tensor h = Tensor::Empty({n, D}, dt, dev);
    ops::Gemm(ctx, false, *b.o, true, h);
    ops::Add(x, h, h);
    // out = h + FFN(RMSNorm(h)).
    const Tensor hn = Norm(h, *b.post_norm);
    if (b.moe) {
      ops::Add(h, b.moe->Forward(hn, eval), x);
    } else {
      const int64_t F = b.gate->dim(0);
      const SwigluActivations acts{Tensor::Empty({n, F}, dt, dev), Tensor::Empty({n, F}, dt, dev),
                                   Tensor::Empty({n, F}, dt, dev)};
      Tensor y = Tensor::Empty({n, D}, dt, dev);
      SwigluMlpForward(hn, *b.gate, *b.up, *b.down, acts, y);
      ops::Add(h, y, x);
    }
  }
  const Tensor xf = Norm(x, *final_norm_);
  Tensor logits = Tensor::Empty({n, o.vocab_size}, dt, dev);
  ops::Gemm(xf, false, *head_, true, logits);
  length_ = pos + n;
  return logits;
}

}  // namespace sb
