#include "moe/layers/router.h"

#include <cmath>

#include "moe/core/rng.h"
#include "moe/ops/ops.h"

namespace sb {
namespace {
// Stream tags: each random draw of a layer has its own counter stream.
constexpr uint64_t kJitterTag = 0x6a177e5ULL;
constexpr uint64_t kNoiseTag = 0x6e015e6a7eULL;
constexpr uint64_t kSecondExpertTag = 0x5ec0de4e7ULL;
}  // namespace

int64_t ExpertCapacity(double factor, int top_k, int64_t tokens, int num_experts,
                       int64_t min_capacity) {
  if (factor <= 0.0) return -1;
  const auto c = static_cast<int64_t>(std::ceil(factor * top_k * tokens / num_experts));
  return std::max(min_capacity, c);
}

double LoadMaxOverMean(const double* load, int num_experts) {
  double total = 0, most = 0;
  for (int e = 0; e < num_experts; ++e) {
    total += load[e];
    most = std::max(most, load[e]);
  }
  return total > 0 ? most * num_experts / total : 0.0;
}

Router::Router(const std::string& prefix, int64_t d_model, const RouterOptions& options,
               DType dtype, Device device)
    : weight(MakeParameter(prefix + "gate.weight", ParamKind::kRouter,
                           {options.num_experts, d_model}, dtype, device)),
      options_(options) {
  if (options.noisy_gating) {
    noise_weight = std::make_unique<Parameter>(MakeParameter(
        prefix + "gate_noise.weight", ParamKind::kRouter, {options.num_experts, d_model}, dtype,
        device));
  }
  if (options.aux_free_bias_rate > 0) {
    // Not trained (never in Parameters()): starts at 0, moved by UpdateSelectionBias.
    selection_bias = std::make_unique<Parameter>(MakeParameter(
        prefix + "gate.e_score_correction_bias", ParamKind::kRouter, {options.num_experts},
        dtype, device));
    ops::Fill(selection_bias->value, 0.0);
  }
}

std::vector<Parameter*> Router::Parameters() {
  std::vector<Parameter*> params = {&weight};
  if (noise_weight) params.push_back(noise_weight.get());
  return params;
}

std::vector<Parameter*> Router::Buffers() {
  if (!selection_bias) return {};
  return {selection_bias.get()};
}

uint64_t Router::Key(const StepContext& ctx, int layer_index, uint64_t tag) const {
  return StreamKey({ctx.seed, static_cast<uint64_t>(ctx.step),
                    static_cast<uint64_t>(ctx.micro_batch), static_cast<uint64_t>(layer_index),
                    tag});
}

const Routing& Router::Forward(const Tensor& x, const StepContext& ctx, int layer_index) {
  const int64_t T = x.dim(0), D = x.dim(1);
  const int E = options_.num_experts;
  // The router computes in its weight's dtype, f32 also next to bf16
  // activations (ST-MoE's selective precision): x is converted once.
  const DType dt = weight.value.dtype();
  const Device dev = x.device();
  x_ = x;
  if (x.dtype() != dt) {
    x_ = x_converted_.Get({T, D}, dt, dev);
    ops::Convert(x, x_);
  }
  // Jitter multiplies the router's copy of x only (Switch); experts see x.
  jittered_ = ctx.training && options_.jitter_eps > 0.0;
  Tensor xr = x_;
  if (jittered_) {
    xr = x_router_.Get({T, D}, dt, dev);
    ops::RouterJitter(x_, options_.jitter_eps, Key(ctx, layer_index, kJitterTag),
                      noise_.Get({T, D}, dt, dev), xr);
  }
  Tensor logits = logits_.Get({T, E}, dt, dev);
  ops::Gemm(xr, false, weight.value, true, logits);
  if (noise_weight) {
    // Shazeer et al. 2017 eq. 4: clean + N(0, 1) * softplus(x W_noise^T), noise in training only.
    Tensor noise_logits = noise_logits_.Get({T, E}, dt, dev);
    ops::Gemm(xr, false, noise_weight->value, true, noise_logits);
    Tensor noisy = noisy_.Get({T, E}, dt, dev);
    ops::NoisyLogits(logits, noise_logits, Key(ctx, layer_index, kNoiseTag), ctx.training,
                     normal_.Get({T, E}, dt, dev), noise_std_.Get({T, E}, dt, dev), noisy);
    logits = noisy;
  }
  logits_view_ = logits;
  Tensor probs = probs_.Get({T, E}, dt, dev), lse = lse_.Get({T}, dt, dev);
  ops::SoftmaxForward(logits, probs, lse);
  Route(ctx, layer_index, T);
  ComputeStats(T);
  return routing_;
}

void Router::Route(const StepContext& ctx, int layer_index, int64_t T) {
  const int E = options_.num_experts, k = options_.top_k;
  const DType dt = weight.value.dtype();
  const Device dev = x_.device();
  Tensor probs = probs_.Get({T, E}, dt, dev);
  Routing& r = routing_;
  const double factor = ctx.training ? options_.capacity_factor_train : options_.capacity_factor_eval;
  r.capacity = ExpertCapacity(factor, k, T, E, options_.min_capacity);
  r.routed = routed_.Get({E}, DType::kI32, dev);
  r.kept = kept_.Get({E}, DType::kI32, dev);
  if (options_.expert_choice()) {
    // Every expert takes its top-C tokens; the gate is the token's prob.
    SB_CHECK(r.capacity >= 0) << "expert-choice routing needs a capacity factor > 0";
    r.expert_ids = expert_ids_.Get({T, E}, DType::kI32, dev);
    r.slots = slots_.Get({T, E}, DType::kI32, dev);
    ops::ExpertChoice(probs, r.capacity, r.expert_ids, r.slots, r.kept);
    ops::Copy(r.kept, r.routed);
    r.gates = probs;
    return;
  }
  r.expert_ids = expert_ids_.Get({T, k}, DType::kI32, dev);
  Tensor topk = topk_probs_.Get({T, k}, dt, dev);
  if (selection_bias) {
    ops::BiasedTopK(probs, selection_bias->value, k, r.expert_ids, topk);
  } else {
    ops::TopK(probs, k, r.expert_ids, topk);
  }
  r.gates = gates_.Get({T, k}, dt, dev);
  ops::RouterGates(topk, options_.normalize_top_k, r.gates);
  r.slots = slots_.Get({T, k}, DType::kI32, dev);
  const bool sample_second = options_.random_second_expert && ctx.training;
  if (!sample_second && !options_.batch_prioritized) {
    ops::AssignSlots(r.expert_ids, E, r.capacity, r.slots, r.routed, r.kept);
    return;
  }
  Tensor active, order;
  if (sample_second) {
    active = active_.Get({T, k}, DType::kI32, dev);
    ops::SampleSecondExpert(topk, Key(ctx, layer_index, kSecondExpertTag), active);
  }
  if (options_.batch_prioritized) {
    order = order_.Get({T}, DType::kI32, dev);
    ops::PriorityOrder(topk, order);
  }
  ops::AssignSlotsOrdered(r.expert_ids, order.defined() ? &order : nullptr,
                          active.defined() ? &active : nullptr, E, r.capacity, r.slots, r.routed,
                          r.kept);
}

void Router::ComputeStats(int64_t T) {
  const int E = options_.num_experts, k = options_.top_k;
  const DType dt = weight.value.dtype();
  const Device dev = x_.device();
  Tensor probs = probs_.Get({T, E}, dt, dev), lse = lse_.Get({T}, dt, dev);
  const Routing& r = routing_;
  RouterStats& s = stats_;
  // Statistics and counts in one tensor: on a GPU, the layer's only read
  // back to the host (the dispatcher needs the counts; docs/cuda.md).
  Tensor summary = summary_.Get({3 + 2 * int64_t{E}}, DType::kF64, dev);
  ops::RouterSummary(probs, lse, r.routed, r.kept, k, summary);
  const std::vector<double> values = summary.ToDoubles();
  s.aux_loss = values[0];
  s.z_loss = values[1];
  s.entropy = values[2];
  if (options_.expert_choice()) {
    s.aux_loss = 0.0;  // balanced by construction: no load-balancing loss
  } else if (options_.balance_loss == BalanceLoss::kCvImportanceLoad) {
    s.aux_loss = ops::NoisyTopKBalanceLoss(r.gates, r.expert_ids, logits_.Get({T, E}, dt, dev),
                                           noisy_.Get({T, E}, dt, dev),
                                           noise_std_.Get({T, E}, dt, dev), 0.0, Tensor(),
                                           Tensor(), Tensor(), Tensor());
  }
  s.routed.assign(E, 0);
  s.kept.assign(E, 0);
  int64_t total_routed = 0, total_kept = 0;
  for (int e = 0; e < E; ++e) {
    s.routed[e] = static_cast<int64_t>(values[3 + e]);
    s.kept[e] = static_cast<int64_t>(values[3 + E + e]);
    total_routed += s.routed[e];
    total_kept += s.kept[e];
  }
  if (!options_.expert_choice()) {
    s.dropped_fraction = T ? static_cast<double>(total_routed - total_kept) / (T * k) : 0.0;
    return;
  }
  // Expert choice drops tokens, not choices: the share no expert took.
  const std::vector<double> slots = r.slots.ToDoubles();
  int64_t uncovered = 0;
  for (int64_t t = 0; t < T; ++t) {
    bool taken = false;
    for (int e = 0; e < E; ++e) taken |= slots[t * E + e] >= 0;
    uncovered += !taken;
  }
  s.dropped_fraction = T ? static_cast<double>(uncovered) / T : 0.0;
}

void Router::UpdateSelectionBias(const double* load) {
  if (!selection_bias) return;
  const int E = options_.num_experts;
  double total = 0;
  for (int e = 0; e < E; ++e) total += load[e];
  // sign(mean - load_e) = sign(total - E * load_e): exact on integer counts.
  std::vector<double> bias = selection_bias->value.ToDoubles();
  for (int e = 0; e < E; ++e) {
    const double gap = total - E * load[e];
    bias[e] += options_.aux_free_bias_rate * ((gap > 0) - (gap < 0));
  }
  Tensor host = Tensor::FromVector(bias, {E});
  ops::Convert(host, selection_bias->value);
}

void Router::Backward(const Tensor& dgates_in, double loss_scale, const Tensor& dx) {
  const int64_t T = x_.dim(0), D = x_.dim(1);
  const int E = options_.num_experts, k = static_cast<int>(routing_.choices_per_token());
  const DType dt = weight.value.dtype();
  const Device dev = x_.device();
  Tensor probs = probs_.Get({T, E}, dt, dev), lse = lse_.Get({T}, dt, dev);
  Tensor dlogits = dlogits_.Get({T, E}, dt, dev);  // d(softmax input)
  ops::Fill(dlogits, 0.0);
  Tensor dprobs = dprobs_.Get({T, E}, dt, dev);
  ops::Fill(dprobs, 0.0);
  const bool cv_loss = !options_.expert_choice() &&
                       options_.balance_loss == BalanceLoss::kCvImportanceLoad;
  Tensor dclean, dnoise_std;
  if (noise_weight) {
    dclean = dclean_.Get({T, E}, dt, dev);
    dnoise_std = dnoise_std_.Get({T, E}, dt, dev);
    ops::Fill(dclean, 0.0);
    ops::Fill(dnoise_std, 0.0);
  }
  if (options_.expert_choice()) {
    // gates = probs[t, e] where e took t: the gradient goes straight to probs.
    ops::Copy(dgates_in, dprobs);
  } else {
    Tensor dgates = dgates_in;
    if (cv_loss) {
      // The importance term adds to the gates' gradient: work on a copy.
      dgates = dgates_.Get({T, k}, dt, dev);
      ops::Copy(dgates_in, dgates);
      ops::NoisyTopKBalanceLoss(routing_.gates, routing_.expert_ids, logits_.Get({T, E}, dt, dev),
                                noisy_.Get({T, E}, dt, dev), noise_std_.Get({T, E}, dt, dev),
                                loss_scale * options_.aux_loss_coef, dgates, dclean, dnoise_std,
                                dlogits);
    }
    // gates -> top-k probs -> all probs (+ load-balancing term) -> logits (+ z term)
    Tensor topk = topk_probs_.Get({T, k}, dt, dev);
    Tensor dtopk = dtopk_.Get({T, k}, dt, dev);
    ops::RouterGatesBackward(topk, routing_.gates, dgates, options_.normalize_top_k, dtopk);
    ops::ScatterTopK(routing_.expert_ids, dtopk, dprobs);
    if (!cv_loss) {
      ops::LoadBalancingLossBackward(routing_.routed, k, loss_scale * options_.aux_loss_coef,
                                     dprobs);
    }
  }
  ops::SoftmaxBackward(probs, dprobs, dlogits);
  ops::RouterZLossBackward(lse, probs, loss_scale * options_.z_loss_coef, dlogits);
  // logits = xr W^T (+ noise from xr W_noise^T) with xr = x * jitter
  const Tensor xr = jittered_ ? x_router_.Get({T, D}, dt, dev) : x_;
  // Through an f32 buffer for the jitter and/or a bf16 dx (added by
  // ops::Axpy); otherwise straight into dx.
  const bool via_buffer = jittered_ || dx.dtype() != dt;
  Tensor dx_router = via_buffer ? dx_router_.Get({T, D}, dt, dev) : dx;
  const double beta = via_buffer ? 0.0 : 1.0;
  if (noise_weight) {
    Tensor dnoise_logits = dnoise_logits_.Get({T, E}, dt, dev);
    ops::NoisyLogitsBackward(noise_logits_.Get({T, E}, dt, dev), normal_.Get({T, E}, dt, dev),
                             dlogits, dnoise_std, dclean, dnoise_logits);
    ops::Gemm(dnoise_logits, true, xr, false, noise_weight->grad, 1.0, 1.0);
    ops::Gemm(dclean, true, xr, false, weight.grad, 1.0, 1.0);
    ops::Gemm(dclean, false, weight.value, false, dx_router, 1.0, beta);
    ops::Gemm(dnoise_logits, false, noise_weight->value, false, dx_router, 1.0, 1.0);
  } else {
    ops::Gemm(dlogits, true, xr, false, weight.grad, 1.0, 1.0);
    ops::Gemm(dlogits, false, weight.value, false, dx_router, 1.0, beta);
  }
  if (via_buffer) {
    if (jittered_) ops::Mul(dx_router, noise_.Get({T, D}, dt, dev), dx_router);
    ops::Axpy(1.0, dx_router, dx);
  }
}

}  // namespace sb
