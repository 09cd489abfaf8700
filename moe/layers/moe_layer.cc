#include "moe/layers/moe_layer.h"

#include <optional>

#include "moe/core/phase_timer.h"
#include "moe/core/rng.h"
#include "moe/ops/ops.h"

namespace sb {
namespace {
constexpr uint64_t kExpertDropoutTag = 0xd20b0e7ULL;
constexpr int64_t kKeyWidth = 4;  // ops::ExpertRowKeys
}  // namespace

MoeLayer::MoeLayer(const std::string& prefix, int layer_index, int64_t d_model,
                   int64_t expert_ffn_dim, const RouterOptions& options,
                   TokenDispatcher* dispatcher, DType dtype, Device device)
    : layer_index_(layer_index),
      dispatcher_(dispatcher),
      router_(prefix, d_model, options, dtype, device),
      experts_(prefix + "experts.", options.num_experts / dispatcher->ep_size(),
               int64_t{options.num_experts} / dispatcher->ep_size() * dispatcher->ep_rank(),
               d_model, expert_ffn_dim, dtype, device) {
  SB_CHECK(options.num_experts % dispatcher->ep_size() == 0)
      << options.num_experts << " experts over " << dispatcher->ep_size() << " ranks";
  if (options.num_shared_experts > 0) {
    // n shared experts of width F summed = one SwiGLU of width n * F (HF DeepSeek-V2/V3).
    const int64_t width =
        options.shared_expert_ffn_dim > 0 ? options.shared_expert_ffn_dim : expert_ffn_dim;
    shared_ = std::make_unique<DenseFfn>(prefix + "shared_experts.", d_model,
                                         options.num_shared_experts * width, dtype, device);
  }
}

std::vector<Parameter*> MoeLayer::Parameters() {
  std::vector<Parameter*> params = router_.Parameters();
  for (Parameter* p : {&experts_.w1, &experts_.w3, &experts_.w2}) params.push_back(p);
  if (shared_) {
    for (Parameter* p : shared_->Parameters()) params.push_back(p);
  }
  return params;
}

Tensor MoeLayer::Forward(const Tensor& x, const StepContext& ctx) {
  const int64_t T = x.dim(0), D = x.dim(1);
  const DType dt = x.dtype();
  const Device dev = x.device();
  x_ = x;
  const Routing& routing = Timed(Phase::kRouter, [&]() -> const Routing& {
    return router_.Forward(x, ctx, layer_index_);
  });

  // Local prepare: kept choices as rows grouped by global expert.
  std::optional<PhaseScope> phase(std::in_place, Phase::kPermute);
  const RouterStats& stats = router_.stats();
  int64_t n = 0;
  for (int64_t c : stats.kept) n += c;
  Tensor row_token = row_token_.Get({n}, DType::kI32, dev);
  Tensor row_choice = row_choice_.Get({n}, DType::kI32, dev);
  ops::PermutationIndices(routing.expert_ids, routing.slots, routing.kept, row_token, row_choice);
  // Gates stay in the router's dtype (f32 next to bf16 activations).
  const DType gdt = routing.gates.dtype();
  Tensor row_gate = row_gate_.Get({n, 1}, gdt, dev);
  ops::GatherRows(routing.gates.Reshape({routing.gates.numel(), 1}), row_choice, row_gate);
  Tensor x_perm = x_perm_.Get({n, D}, dt, dev);
  ops::GatherRows(x, row_token, x_perm);

  // Exchange counts, move rows to the expert ranks, run experts, move back.
  // One expert-parallel rank: dispatch and combine are identities, so the
  // experts read x_perm and their output serves as y_perm (two [n, D]
  // copies saved each way).
  const bool local = dispatcher_->ep_size() == 1;
  phase.emplace(Phase::kDispatch);
  plan_ = dispatcher_->Plan(stats.kept);
  Tensor x_local = local ? x_perm : x_local_.Get({plan_.total_recv, D}, dt, dev);
  if (!local) dispatcher_->Dispatch(plan_, x_perm, x_local);
  Tensor local_keys;
  const double dropout = router_.options().expert_dropout;
  if (ctx.training && dropout > 0) {
    // Each row's dropout key is a function of (seed, step, micro-batch,
    // layer, token, expert), made where the token lives and sent with it, so
    // every expert-parallel layout drops the same units.
    const uint64_t base = StreamKey({ctx.seed, static_cast<uint64_t>(ctx.step),
                                     static_cast<uint64_t>(ctx.micro_batch),
                                     static_cast<uint64_t>(layer_index_), kExpertDropoutTag});
    Tensor row_keys = row_keys_.Get({n, kKeyWidth}, dt, dev);
    ops::ExpertRowKeys(routing.expert_ids, row_choice, base, row_keys);
    local_keys = local ? row_keys : local_keys_.Get({plan_.total_recv, kKeyWidth}, dt, dev);
    if (!local) dispatcher_->Dispatch(plan_, row_keys, local_keys);
  }
  // With a fixed capacity on a GPU, pad every expert to the capacity bound
  // (ep source ranks of at most C rows each): one strided-batched GEMM.
  const int64_t pad = dev == Device::kCuda && routing.capacity >= 0
                          ? routing.capacity * dispatcher_->ep_size() : 0;
  phase.emplace(Phase::kExperts);
  Tensor y_local =
      experts_.Forward(x_local, plan_.rows_per_local_expert, pad, local_keys, dropout);
  phase.emplace(Phase::kCombine);
  y_perm_view_ = local ? y_local : y_perm_.Get({n, D}, dt, dev);
  if (!local) dispatcher_->Combine(plan_, y_local, y_perm_view_);
  const Tensor& y_perm = y_perm_view_;

  // Local finish: y_t = sum of gate * expert output over t's kept choices.
  phase.emplace(Phase::kUnpermute);
  Tensor y = y_.Get({T, D}, dt, dev);
  if (shared_) {
    ops::Copy(shared_->Forward(x, ctx), y);
  } else {
    ops::Fill(y, 0.0);
  }
  ops::ScatterAddRows(y_perm, row_token, y, &row_gate);
  return y;
}

Tensor MoeLayer::Backward(const Tensor& dy, double loss_scale) {
  const int64_t T = x_.dim(0), D = x_.dim(1);
  const int64_t k = router_.routing().choices_per_token();
  const DType dt = x_.dtype();
  const Device dev = x_.device();
  const int64_t n = plan_.total_send;
  const DType gdt = router_.routing().gates.dtype();
  Tensor row_token = row_token_.Get({n}, DType::kI32, dev);
  Tensor row_choice = row_choice_.Get({n}, DType::kI32, dev);
  Tensor row_gate = row_gate_.Get({n, 1}, gdt, dev);
  const Tensor& y_perm = y_perm_view_;  // the experts' output (read before their Backward)
  const bool local = dispatcher_->ep_size() == 1;

  // y_t = sum_c g_c y_c:  dg_c = dy_t . y_c,  dy_c = g_c dy_t
  std::optional<PhaseScope> phase(std::in_place, Phase::kUnpermute);
  Tensor dgate_rows = dgate_rows_.Get({n, 1}, gdt, dev);
  ops::GatherRowDot(dy, row_token, y_perm, dgate_rows);
  Tensor dy_perm = dy_perm_.Get({n, D}, dt, dev);
  ops::GatherRows(dy, row_token, dy_perm, &row_gate);

  // Backward of combine is dispatch and vice versa, with the forward's plan.
  phase.emplace(Phase::kDispatch);
  Tensor dy_local = local ? dy_perm : dy_local_.Get({plan_.total_recv, D}, dt, dev);
  if (!local) dispatcher_->Dispatch(plan_, dy_perm, dy_local);
  phase.emplace(Phase::kExperts);
  Tensor dx_local = experts_.Backward(dy_local);
  phase.emplace(Phase::kCombine);
  Tensor dx_perm = local ? dx_local : dx_perm_.Get({n, D}, dt, dev);
  if (!local) dispatcher_->Combine(plan_, dx_local, dx_perm);

  phase.emplace(Phase::kPermute);
  Tensor dx = dx_.Get({T, D}, dt, dev);
  if (shared_) {
    ops::Copy(shared_->Backward(dy, loss_scale), dx);
  } else {
    ops::Fill(dx, 0.0);
  }
  ops::ScatterAddRows(dx_perm, row_token, dx);

  // Gate gradients back to [T, k] (dropped choices stay 0), then the router.
  phase.emplace(Phase::kRouter);
  Tensor dgates = dgates_.Get({T * k, 1}, gdt, dev);
  ops::Fill(dgates, 0.0);
  ops::ScatterAddRows(dgate_rows, row_choice, dgates);
  router_.Backward(dgates.Reshape({T, k}), loss_scale, dx);
  return dx;
}

}  // namespace sb
