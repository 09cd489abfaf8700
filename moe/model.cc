#include "moe/model.h"

#include <algorithm>
#include <optional>
#include <string>

#include "moe/layers/dense_ffn.h"
#include "moe/core/phase_timer.h"
#include "moe/ops/ops.h"

namespace sb {

Model::Model(const ModelOptions& o, TokenDispatcher* dispatcher, DType dtype, Device device)
    : options_(o),
      embedding_(o.vocab_size, o.d_model, dtype, device),
      final_norm_("model.norm.weight", o.d_model, o.norm_eps, dtype, device) {
  SB_CHECK_EQ(static_cast<int>(o.moe_layers.size()), o.num_layers);
  if (dispatcher == nullptr) dispatcher = &local_dispatcher_;
  const AttentionShape attn{o.d_model, o.num_heads, o.num_kv_heads,
                            static_cast<int>(o.d_model / o.num_heads), o.rope_theta};
  for (int i = 0; i < o.num_layers; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    std::unique_ptr<FeedForward> ffn;
    if (o.moe_layers[i]) {
      ffn = std::make_unique<MoeLayer>(prefix + "block_sparse_moe.", i, o.d_model,
                                       o.expert_ffn_dim, o.router, dispatcher, dtype, device);
    } else {
      ffn = std::make_unique<DenseFfn>(prefix + "mlp.", o.d_model, o.ffn_dim, dtype, device);
    }
    blocks_.push_back(std::make_unique<TransformerBlock>(i, attn, o.norm_eps, std::move(ffn),
                                                         dtype, device));
  }
  if (!o.tie_embeddings) {
    lm_head_ = std::make_unique<Parameter>(MakeParameter(
        "lm_head.weight", ParamKind::kWeight, {o.vocab_size, o.d_model}, dtype, device));
  }
}

std::vector<Parameter*> Model::Parameters() {
  std::vector<Parameter*> params = {&embedding_.weight};
  for (auto& block : blocks_)
    for (Parameter* p : block->Parameters()) params.push_back(p);
  params.push_back(&final_norm_.weight);
  if (lm_head_) params.push_back(lm_head_.get());
  return params;
}

std::vector<MoeLayer*> Model::MoeLayers() {
  std::vector<MoeLayer*> layers;
  for (auto& block : blocks_)
    if (MoeLayer* moe = block->moe()) layers.push_back(moe);
  return layers;
}

int64_t Model::NumParameters(bool count_all_experts) const {
  int64_t n = 0;
  for (Parameter* p : const_cast<Model*>(this)->Parameters()) {
    int64_t count = p->value.numel();
    // Local stacks hold E/ep experts; scale to all E when asked.
    if (p->is_expert() && count_all_experts)
      count = count / p->value.dim(0) * options_.router.num_experts;
    n += count;
  }
  return n;
}

void Model::InitWeights(uint64_t seed) {
  for (Parameter* p : Parameters()) {
    if (p->kind == ParamKind::kNorm) {
      InitConstant(*p, 1.0);
    } else {
      InitNormal(*p, seed, options_.init_std);
    }
  }
}

void Model::ZeroGrad() {
  for (Parameter* p : Parameters()) ops::Fill(p->grad, 0.0);
}

ForwardResult Model::Forward(const Tensor& inputs, const Tensor& targets, const StepContext& ctx) {
  SB_CHECK(inputs.ndim() == 2 && targets.shape() == inputs.shape())
      << "inputs " << inputs.ToString() << " targets " << targets.ToString();
  const int seq_len = static_cast<int>(inputs.dim(1));
  SB_CHECK_LE(seq_len, options_.max_seq_len);
  const int64_t T = inputs.numel();
  Tensor ids = inputs.Reshape({T});
  targets_ = targets.Reshape({T});

  Tensor x = Timed(Phase::kEmbedding, [&] { return embedding_.Forward(ids); });
  for (auto& block : blocks_) x = block->Forward(x, seq_len, ctx);
  final_hidden_ = Timed(Phase::kNorm, [&] { return final_norm_.Forward(x); });
  std::optional<PhaseScope> phase(std::in_place, Phase::kLmHeadLoss);
  const Parameter& head = lm_head_ ? *lm_head_ : embedding_.weight;
  logits_ = logits_buf_.Get({T, options_.vocab_size}, x.dtype(), x.device());
  ops::Gemm(final_hidden_, false, head.value, true, logits_);

  ForwardResult r;
  Tensor losses = losses_.Get({T}, x.dtype(), x.device());
  ops::CrossEntropyForward(logits_, targets_, losses, lse_.Get({T}, x.dtype(), x.device()));
  const std::vector<double> token_losses = losses.ToDoubles();
  const std::vector<double> target_ids = targets_.ToDoubles();
  double sum = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    if (target_ids[t] >= 0) {
      sum += token_losses[t];
      ++r.tokens;
    }
  }
  valid_tokens_ = r.tokens;
  phase.reset();
  r.loss = r.tokens ? sum / r.tokens : 0.0;
  int num_moe = 0;
  for (MoeLayer* moe : MoeLayers()) {
    r.aux_loss += moe->stats().aux_loss;
    r.z_loss += moe->stats().z_loss;
    r.dropped_fraction += moe->stats().dropped_fraction;
    ++num_moe;
  }
  if (num_moe) r.dropped_fraction /= num_moe;
  r.total_loss = r.loss + options_.router.aux_loss_coef * r.aux_loss +
                 options_.router.z_loss_coef * r.z_loss;
  return r;
}

void Model::Backward(double loss_scale) {
  const int64_t T = targets_.numel();
  std::optional<PhaseScope> phase(std::in_place, Phase::kLmHeadLoss);
  const Parameter& head = lm_head_ ? *lm_head_ : embedding_.weight;
  // The gradient overwrites the logits (saves a [T, V] buffer).
  const double ce_scale = valid_tokens_ ? loss_scale / valid_tokens_ : 0.0;
  ops::CrossEntropyBackward(logits_, targets_, lse_.Get({T}, logits_.dtype(), logits_.device()),
                            ce_scale, logits_);
  const Tensor& dlogits = logits_;
  ops::Gemm(dlogits, true, final_hidden_, false, head.grad, 1.0, 1.0);
  Tensor dh = dhidden_.Get(final_hidden_.shape(), final_hidden_.dtype(), final_hidden_.device());
  ops::Gemm(dlogits, false, head.value, false, dh);
  phase.emplace(Phase::kNorm);
  Tensor dx = final_norm_.Backward(dh);
  phase.reset();
  auto finished = [this](std::vector<Parameter*> params) {
    if (backward_observer_) backward_observer_(params);
  };
  if (lm_head_) {
    finished({lm_head_.get(), &final_norm_.weight});
  } else {
    finished({&final_norm_.weight});
  }
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
    dx = (*it)->Backward(dx, loss_scale);
    std::vector<Parameter*> params = (*it)->Parameters();
    std::reverse(params.begin(), params.end());  // Parameters() order, backwards
    finished(params);
  }
  Timed(Phase::kEmbedding, [&] { embedding_.Backward(dx); });
  finished({&embedding_.weight});
}

}  // namespace sb
