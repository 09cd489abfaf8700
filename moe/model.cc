#include "moe/model.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <optional>
#include <string>

#include "moe/core/phase_timer.h"
#include "moe/layers/dense_ffn.h"
#include "moe/ops/ops.h"

namespace sb {

Model::Model(const ModelOptions& o, TokenDispatcher* dispatcher, DType dtype, Device device)
    : Model(o, dispatcher, dtype, device, dtype) {}

Model::Model(const ModelOptions& o, TokenDispatcher* dispatcher, DType dtype, Device device,
             DType compute_dtype)
    : options_(o),
      device_(device),
      compute_dtype_(compute_dtype),
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
  // One arena pair serves every block: only one block's activations are
  // alive at a time when each recomputes its own before its backward.
  if (o.activation_recompute) {
    for (auto& block : blocks_) block->set_recompute(&forward_arena_, &backward_arena_);
  }
  if (compute_dtype != dtype) {
    SB_CHECK(device == Device::kCuda && dtype == DType::kF32 && compute_dtype == DType::kBF16)
        << "mixed precision is f32 master weights with bf16 compute on CUDA, not "
        << DTypeName(dtype) << " / " << DTypeName(compute_dtype) << " on " << DeviceName(device);
    // Routers keep computing in f32 from their master weights.
    for (Parameter* p : Parameters())
      if (p->kind != ParamKind::kRouter) AddComputeCopy(*p, compute_dtype);
  }
}

void Model::RefreshComputeCopies() {
  for (Parameter* p : Parameters()) RefreshComputeCopy(*p);
}

std::vector<Parameter*> Model::Parameters() {
  std::vector<Parameter*> params = {&embedding_.weight};
  for (auto& block : blocks_)
    for (Parameter* p : block->Parameters()) params.push_back(p);
  params.push_back(&final_norm_.weight);
  if (lm_head_) params.push_back(lm_head_.get());
  return params;
}

std::vector<Parameter*> Model::Buffers() {
  std::vector<Parameter*> buffers;
  for (MoeLayer* moe : MoeLayers())
    for (Parameter* b : moe->router().Buffers()) buffers.push_back(b);
  return buffers;
}

std::vector<Parameter*> Model::WeightTensors() {
  std::vector<Parameter*> all = Parameters();
  for (Parameter* b : Buffers()) all.push_back(b);
  return all;
}

std::vector<double> Model::RoutedCounts() {
  std::vector<double> counts;
  for (MoeLayer* moe : MoeLayers())
    for (int64_t c : moe->stats().routed) counts.push_back(static_cast<double>(c));
  return counts;
}

void Model::UpdateSelectionBiases(const std::vector<double>& step_load) {
  const int E = options_.router.num_experts;
  const std::vector<MoeLayer*> layers = MoeLayers();
  SB_CHECK_EQ(step_load.size(), layers.size() * E) << "one load per expert of every MoE layer";
  for (size_t i = 0; i < layers.size(); ++i) layers[i]->router().UpdateSelectionBias(&step_load[i * E]);
}

double MeanLoadImbalance(const std::vector<double>& load, int num_experts) {
  const size_t layers = load.size() / num_experts;
  double sum = 0;
  for (size_t i = 0; i < layers; ++i) sum += LoadMaxOverMean(&load[i * num_experts], num_experts);
  return layers ? sum / layers : 0.0;
}

double SelectionBiasAbsMax(Model& model) {
  double most = 0;
  for (Parameter* b : model.Buffers())
    for (double v : b->value.ToDoubles()) most = std::max(most, std::abs(v));
  return most;
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
  RefreshComputeCopies();
}

int64_t Model::LmHeadChunkTokens() const {
  if (options_.lm_head_chunk_tokens > 0) return options_.lm_head_chunk_tokens;
  // About 8 MiB of logits per chunk on the CPU (cache-sized); 256 MiB on a
  // GPU (large chunks keep the head's gradient GEMM efficient).
  const int64_t budget = device_ == Device::kCpu ? int64_t{8} << 20 : int64_t{256} << 20;
  const int64_t row_bytes = options_.vocab_size * static_cast<int64_t>(DTypeSize(
                                                       AccumDType(compute_dtype_)));
  return std::max<int64_t>(1, budget / std::max<int64_t>(row_bytes, 1));
}

void Model::ZeroGrad() {
  for (Parameter* p : Parameters()) ops::Fill(p->grad, 0.0);
}

namespace {
// ids [T] i32 on the host or `device`; checked against [0, limit) on the
// host (a GPU kernel cannot report a bad id) and copied to `device`.
Tensor ToDevice(const Tensor& ids, Device device, int64_t lo, int64_t limit, const char* what,
                ScratchTensor& buffer) {
  if (ids.device() == Device::kCpu) {
    const int32_t* p = ids.data<int32_t>();
    for (int64_t t = 0; t < ids.numel(); ++t) {
      SB_CHECK(p[t] >= lo && p[t] < limit) << what << " " << p[t] << " at " << t
                                           << " outside [" << lo << ", " << limit << ")";
    }
  }
  if (ids.device() == device) return ids;
  Tensor out = buffer.Get(ids.shape(), DType::kI32, device);
  ops::Copy(ids, out);
  return out;
}
}  // namespace

ForwardResult Model::Forward(const Tensor& inputs, const Tensor& targets, const StepContext& ctx) {
  SB_CHECK(inputs.ndim() == 2 && targets.shape() == inputs.shape())
      << "inputs " << inputs.ToString() << " targets " << targets.ToString();
  const int seq_len = static_cast<int>(inputs.dim(1));
  SB_CHECK_LE(seq_len, options_.max_seq_len);
  const int64_t T = inputs.numel();
  ForwardResult r;
  // Tokens with a target, counted where the targets are (the host, for batches).
  const std::vector<double> target_ids = targets.ToDoubles();
  for (double y : target_ids) r.tokens += y >= 0 ? 1 : 0;
  valid_tokens_ = r.tokens;
  const Tensor ids = ToDevice(inputs.Reshape({T}), device_, 0, options_.vocab_size, "token id",
                              ids_device_);
  targets_ = ToDevice(targets.Reshape({T}), device_, INT32_MIN, options_.vocab_size, "target",
                      targets_device_);

  Tensor x = Timed(Phase::kEmbedding, [&] { return embedding_.Forward(ids); });
  for (auto& block : blocks_) x = block->Forward(x, seq_len, ctx);
  final_hidden_ = Timed(Phase::kNorm, [&] { return final_norm_.Forward(x); });
  std::optional<PhaseScope> phase(std::in_place, Phase::kLmHeadLoss);
  const Parameter& h = head();
  logits_ready_ = false;
  const Tensor losses = losses_.Get({T}, AccumDType(x.dtype()), x.device());
  head_grads_ready_ = ctx.training;
  if (ctx.training) {
    dhidden_ = dhidden_buf_.Get(final_hidden_.shape(), final_hidden_.dtype(), device_);
    dhead_ = dhead_buf_.Get(h.grad.shape(), h.grad.dtype(), device_);
    ops::Fill(dhead_, 0.0);
    ops::LmHeadCrossEntropy(final_hidden_, h.compute(), targets_, LmHeadChunkTokens(),
                            r.tokens ? 1.0 / r.tokens : 0.0, losses, dhidden_, dhead_);
  } else {
    ops::LmHeadCrossEntropy(final_hidden_, h.compute(), targets_, LmHeadChunkTokens(), 0.0,
                            losses, Tensor(), Tensor());
  }
  const std::vector<double> token_losses = losses.ToDoubles();
  double sum = 0.0;
  for (int64_t t = 0; t < T; ++t) sum += token_losses[t];  // ignored targets contribute 0
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

const Tensor& Model::logits() {
  SB_CHECK(final_hidden_.defined()) << "Model::logits before any Forward";
  if (!logits_ready_) {
    logits_ = logits_buf_.Get({final_hidden_.dim(0), options_.vocab_size},
                              AccumDType(final_hidden_.dtype()), device_);
    ops::Gemm(final_hidden_, false, head().compute(), true, logits_);
    logits_ready_ = true;
  }
  return logits_;
}

void Model::Backward(double loss_scale) {
  SB_CHECK(head_grads_ready_) << "Model::Backward needs a Forward in training mode before it";
  head_grads_ready_ = false;
  // The LM head's part was computed by Forward for a loss scale of 1.
  {
    PhaseScope phase(Phase::kLmHeadLoss);
    const Parameter& h = head();
    ops::Axpy(loss_scale, dhead_, h.grad);
    ops::Scale(dhidden_, loss_scale);
  }
  Tensor dx = Timed(Phase::kNorm, [&] { return final_norm_.Backward(dhidden_); });
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
