#include "moe/layers/router.h"

#include <cmath>

#include "moe/core/rng.h"
#include "moe/ops/ops.h"

namespace sb {

int64_t ExpertCapacity(double factor, int top_k, int64_t tokens, int num_experts,
                       int64_t min_capacity) {
  if (factor <= 0.0) return -1;
  const auto c = static_cast<int64_t>(std::ceil(factor * top_k * tokens / num_experts));
  return std::max(min_capacity, c);
}

Router::Router(const std::string& prefix, int64_t d_model, const RouterOptions& options,
               DType dtype, Device device)
    : weight(MakeParameter(prefix + "gate.weight", ParamKind::kRouter,
                           {options.num_experts, d_model}, dtype, device)),
      options_(options) {}

const Routing& Router::Forward(const Tensor& x, const StepContext& ctx, int layer_index) {
  const int64_t T = x.dim(0), D = x.dim(1);
  const int E = options_.num_experts, k = options_.top_k;
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
    const uint64_t key = StreamKey({ctx.seed, static_cast<uint64_t>(ctx.step),
                                    static_cast<uint64_t>(ctx.micro_batch),
                                    static_cast<uint64_t>(layer_index), 0x6a177e5ULL});
    ops::RouterJitter(x_, options_.jitter_eps, key, noise_.Get({T, D}, dt, dev), xr);
  }
  Tensor logits = logits_.Get({T, E}, dt, dev);
  ops::Gemm(xr, false, weight.value, true, logits);
  logits_view_ = logits;
  Tensor probs = probs_.Get({T, E}, dt, dev), lse = lse_.Get({T}, dt, dev);
  ops::SoftmaxForward(logits, probs, lse);

  Routing& r = routing_;
  r.expert_ids = expert_ids_.Get({T, k}, DType::kI32, dev);
  Tensor topk = topk_probs_.Get({T, k}, dt, dev);
  ops::TopK(probs, k, r.expert_ids, topk);
  r.gates = gates_.Get({T, k}, dt, dev);
  ops::RouterGates(topk, options_.normalize_top_k, r.gates);
  const double factor = ctx.training ? options_.capacity_factor_train : options_.capacity_factor_eval;
  r.capacity = ExpertCapacity(factor, k, T, E, options_.min_capacity);
  r.slots = slots_.Get({T, k}, DType::kI32, dev);
  r.routed = routed_.Get({E}, DType::kI32, dev);
  r.kept = kept_.Get({E}, DType::kI32, dev);
  ops::AssignSlots(r.expert_ids, E, r.capacity, r.slots, r.routed, r.kept);

  // Statistics and counts in one tensor: on a GPU, the layer's only read
  // back to the host (the dispatcher needs the counts; docs/cuda.md).
  RouterStats& s = stats_;
  Tensor summary = summary_.Get({3 + 2 * int64_t{E}}, DType::kF64, dev);
  ops::RouterSummary(probs, lse, r.routed, r.kept, k, summary);
  const std::vector<double> values = summary.ToDoubles();
  s.aux_loss = values[0];
  s.z_loss = values[1];
  s.entropy = values[2];
  s.routed.assign(E, 0);
  s.kept.assign(E, 0);
  int64_t total_kept = 0;
  for (int e = 0; e < E; ++e) {
    s.routed[e] = static_cast<int64_t>(values[3 + e]);
    s.kept[e] = static_cast<int64_t>(values[3 + E + e]);
    total_kept += s.kept[e];
  }
  s.dropped_fraction = T ? 1.0 - static_cast<double>(total_kept) / (T * k) : 0.0;
  return r;
}

void Router::Backward(const Tensor& dgates, double loss_scale, const Tensor& dx) {
  const int64_t T = x_.dim(0), D = x_.dim(1);
  const int E = options_.num_experts, k = options_.top_k;
  const DType dt = weight.value.dtype();
  const Device dev = x_.device();
  Tensor probs = probs_.Get({T, E}, dt, dev), lse = lse_.Get({T}, dt, dev);
  Tensor topk = topk_probs_.Get({T, k}, dt, dev);
  // gates -> top-k probs -> all probs (+ load-balancing term) -> logits (+ z term)
  Tensor dtopk = dtopk_.Get({T, k}, dt, dev);
  ops::RouterGatesBackward(topk, routing_.gates, dgates, options_.normalize_top_k, dtopk);
  Tensor dprobs = dprobs_.Get({T, E}, dt, dev);
  ops::Fill(dprobs, 0.0);
  ops::ScatterTopK(routing_.expert_ids, dtopk, dprobs);
  ops::LoadBalancingLossBackward(routing_.routed, k, loss_scale * options_.aux_loss_coef, dprobs);
  Tensor dlogits = dlogits_.Get({T, E}, dt, dev);
  ops::Fill(dlogits, 0.0);
  ops::SoftmaxBackward(probs, dprobs, dlogits);
  ops::RouterZLossBackward(lse, probs, loss_scale * options_.z_loss_coef, dlogits);
  // logits = xr W^T with xr = x * noise
  const Tensor xr = jittered_ ? x_router_.Get({T, D}, dt, dev) : x_;
  ops::Gemm(dlogits, true, xr, false, weight.grad, 1.0, 1.0);
  if (jittered_ || dx.dtype() != dt) {
    // Through an f32 buffer: the noise, and/or bf16 dx (added by ops::Axpy).
    Tensor dxr = dx_router_.Get({T, D}, dt, dev);
    ops::Gemm(dlogits, false, weight.value, false, dxr);
    if (jittered_) ops::Mul(dxr, noise_.Get({T, D}, dt, dev), dxr);
    ops::Axpy(1.0, dxr, dx);
  } else {
    ops::Gemm(dlogits, false, weight.value, false, dx, 1.0, 1.0);
  }
}

}  // namespace sb
