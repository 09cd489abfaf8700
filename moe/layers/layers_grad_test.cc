// Finite-difference gradient checks for every layer type and every one of its
// parameters and inputs, in f64. Each layer is scored with L = sum(y * R) for
// a fixed random R (so dL/dy = R) plus, for MoE layers, the router losses.
#include <functional>
#include <memory>

#include "gtest/gtest.h"
#include "moe/layers/attention.h"
#include "moe/layers/dense_ffn.h"
#include "moe/layers/embedding.h"
#include "moe/layers/moe_layer.h"
#include "moe/layers/rmsnorm.h"
#include "moe/layers/transformer_block.h"
#include "moe/ops/ops.h"
#include "tests/testing/grad_check.h"

namespace sb {
namespace {

using testing::DotAll;
using testing::ExpectGradientMatches;
using testing::FillRandom;
using testing::RandomTensor;

void Randomize(const std::vector<Parameter*>& params, uint64_t seed, double std) {
  for (Parameter* p : params) {
    FillRandom(p->value, seed + HashName(p->name) % 1000, std);
    ops::Fill(p->grad, 0.0);
  }
}

// Checks dL/dx and dL/dparam for a layer given closures that run forward
// (returning L) and backward (returning dx, accumulating param grads).
void CheckLayer(const std::string& what, const Tensor& x, const std::vector<Parameter*>& params,
                const std::function<double()>& loss, const std::function<Tensor()>& backward,
                const testing::GradCheckOptions& opt = {}) {
  for (Parameter* p : params) ops::Fill(p->grad, 0.0);
  loss();
  Tensor dx_view = backward();
  Tensor dx = Tensor::Empty(dx_view.shape(), DType::kF64);
  ops::Copy(dx_view, dx);
  std::vector<Tensor> grads;
  for (Parameter* p : params) {
    grads.push_back(Tensor::Empty(p->grad.shape(), DType::kF64));
    ops::Copy(p->grad, grads.back());
  }
  if (x.defined()) ExpectGradientMatches(what + " input", x, dx, loss, opt);
  for (size_t i = 0; i < params.size(); ++i)
    ExpectGradientMatches(what + " " + params[i]->name, params[i]->value, grads[i], loss, opt);
}

TEST(GradCheck, RmsNorm) {
  RmsNorm norm("norm.weight", 6, 1e-5, DType::kF64, Device::kCpu);
  Randomize({&norm.weight}, 1, 1.0);
  Tensor x = RandomTensor({5, 6}, 2), r = RandomTensor({5, 6}, 3);
  CheckLayer("rmsnorm", x, {&norm.weight}, [&] { return DotAll(norm.Forward(x), r); },
             [&] { return norm.Backward(r); });
}

TEST(GradCheck, Embedding) {
  Embedding emb(7, 4, DType::kF64, Device::kCpu);
  Randomize({&emb.weight}, 4, 1.0);
  Tensor ids = Tensor::FromVector<int32_t>({3, 0, 3, 6, 1}, {5});
  Tensor r = RandomTensor({5, 4}, 5);
  CheckLayer("embedding", Tensor(), {&emb.weight}, [&] { return DotAll(emb.Forward(ids), r); },
             [&] { emb.Backward(r); return Tensor::Zeros({1}, DType::kF64); });
}

TEST(GradCheck, AttentionGqaRope) {
  AttentionShape shape{8, 4, 2, 2, 100.0};  // D = 8, H = 4, Hkv = 2, hd = 2
  Attention attn("a.", shape, DType::kF64, Device::kCpu);
  Randomize({&attn.q_proj, &attn.k_proj, &attn.v_proj, &attn.o_proj}, 6, 0.5);
  const int seq = 5;
  Tensor x = RandomTensor({2 * seq, 8}, 7), r = RandomTensor({2 * seq, 8}, 8);
  CheckLayer("attention", x, {&attn.q_proj, &attn.k_proj, &attn.v_proj, &attn.o_proj},
             [&] { return DotAll(attn.Forward(x, seq), r); }, [&] { return attn.Backward(r); });
}

TEST(GradCheck, DenseFfn) {
  DenseFfn ffn("mlp.", 6, 10, DType::kF64, Device::kCpu);
  Randomize(ffn.Parameters(), 9, 0.5);
  Tensor x = RandomTensor({5, 6}, 10), r = RandomTensor({5, 6}, 11);
  CheckLayer("dense_ffn", x, ffn.Parameters(),
             [&] { return DotAll(ffn.Forward(x, StepContext{}), r); },
             [&] { return ffn.Backward(r, 1.0); });
}

// An MoE layer's loss includes its router losses: L = sum(y R) + s (a aux + c z).
// `setup` may change the layer after its random init (a selection bias).
void CheckMoe(const std::string& what, const RouterOptions& o, const StepContext& ctx,
              const std::function<void(MoeLayer&)>& setup = nullptr) {
  LocalDispatcher dispatcher;
  MoeLayer moe("moe.", 0, 6, 5, o, &dispatcher, DType::kF64, Device::kCpu);
  Randomize(moe.Parameters(), 12, 0.7);
  if (setup) setup(moe);
  Tensor x = RandomTensor({9, 6}, 13), r = RandomTensor({9, 6}, 14);
  const double scale = 0.5;
  auto loss = [&] {
    const double main = DotAll(moe.Forward(x, ctx), r);
    return main + scale * (o.aux_loss_coef * moe.stats().aux_loss + o.z_loss_coef * moe.stats().z_loss);
  };
  loss();
  if (o.capacity_factor_train > 0 && o.capacity_factor_train < 1) {
    EXPECT_GT(moe.stats().dropped_fraction, 0.0) << what << " should drop tokens";
  }
  CheckLayer(what, x, moe.Parameters(), loss, [&] { return moe.Backward(r, scale); });
}

RouterOptions MoeOptions(int k, bool normalize, double cf, double jitter) {
  RouterOptions o;
  o.num_experts = 4;
  o.top_k = k;
  o.normalize_top_k = normalize;
  o.capacity_factor_train = cf;
  o.min_capacity = 1;
  o.jitter_eps = jitter;
  o.aux_loss_coef = 0.3;  // large so that their gradients matter in the check
  o.z_loss_coef = 0.2;
  return o;
}

TEST(GradCheck, MoeTop1RawGatesWithDropsAndJitter) {
  StepContext ctx;
  ctx.seed = 5;
  CheckMoe("moe top1 raw cf0.5 jitter", MoeOptions(1, false, 0.5, 0.1), ctx);
}

TEST(GradCheck, MoeTop2RenormalisedDropless) {
  CheckMoe("moe top2 renorm dropless", MoeOptions(2, true, 0.0, 0.0), StepContext{});
}

TEST(GradCheck, MoeTop2RawWithDrops) {
  CheckMoe("moe top2 raw cf0.6", MoeOptions(2, false, 0.6, 0.0), StepContext{});
}

TEST(GradCheck, MoeTop2RenormalisedWithDrops) {
  CheckMoe("moe top2 renorm cf0.6", MoeOptions(2, true, 0.6, 0.0), StepContext{});
}

// Routing variants (docs/moe_semantics.md, "Routing variants"): the random
// draws are keyed by the context, so every loss() call draws the same ones.
StepContext VariantContext() {
  StepContext ctx;
  ctx.seed = 21;
  ctx.step = 3;
  ctx.micro_batch = 2;
  return ctx;
}

TEST(GradCheck, MoeNoisyTopKWithCvLossAndDrops) {
  RouterOptions o = MoeOptions(2, true, 0.75, 0.0);
  o.noisy_gating = true;
  o.balance_loss = BalanceLoss::kCvImportanceLoad;
  CheckMoe("moe noisy top2 cv-loss cf0.75", o, VariantContext());
}

TEST(GradCheck, MoeNoisyTop1SwitchLossWithJitter) {
  RouterOptions o = MoeOptions(1, false, 0.0, 0.1);
  o.noisy_gating = true;
  CheckMoe("moe noisy top1 switch-loss jitter", o, VariantContext());
}

TEST(GradCheck, MoeRandomSecondExpertBatchPrioritizedWithDrops) {
  RouterOptions o = MoeOptions(2, false, 0.6, 0.0);
  o.random_second_expert = true;
  o.batch_prioritized = true;
  CheckMoe("moe gshard-random bpr cf0.6", o, VariantContext());
}

TEST(GradCheck, MoeExpertChoiceNoisy) {
  RouterOptions o = MoeOptions(2, false, 0.25, 0.0);  // C = 2: 8 slots for 9 tokens
  o.routing = RoutingMode::kExpertChoice;
  o.noisy_gating = true;
  CheckMoe("moe expert-choice noisy", o, VariantContext());
}

TEST(GradCheck, MoeAuxFreeBiasSharedExpertsAndExpertDropout) {
  RouterOptions o = MoeOptions(2, true, 0.0, 0.0);
  o.aux_free_bias_rate = 1e-3;
  o.num_shared_experts = 2;
  o.shared_expert_ffn_dim = 3;
  o.expert_dropout = 0.3;
  CheckMoe("moe aux-free shared dropout", o, VariantContext(), [](MoeLayer& moe) {
    ASSERT_NE(moe.shared_experts(), nullptr);
    EXPECT_EQ(moe.shared_experts()->gate_proj.value.dim(0), 6);  // 2 shared experts x 3
    FillRandom(moe.router().selection_bias->value, 19, 0.2);
  });
}

TEST(GradCheck, TransformerBlockWithMoe) {
  LocalDispatcher dispatcher;
  RouterOptions o = MoeOptions(2, false, 1.0, 0.0);
  // head_dim must be even for RoPE: D = 8, H = 2 -> hd = 4.
  AttentionShape s8{8, 2, 1, 4, 10000.0};
  auto ffn = std::make_unique<MoeLayer>("m.", 0, 8, 6, o, &dispatcher, DType::kF64, Device::kCpu);
  TransformerBlock block(0, s8, 1e-5, std::move(ffn), DType::kF64, Device::kCpu);
  Randomize(block.Parameters(), 15, 0.5);
  for (Parameter* p : block.Parameters())
    if (p->kind == ParamKind::kNorm) FillRandom(p->value, 16, 1.0);
  const int seq = 4;
  Tensor x = RandomTensor({2 * seq, 8}, 17), r = RandomTensor({2 * seq, 8}, 18);
  MoeLayer* moe = block.moe();
  auto loss = [&] {
    const double main = DotAll(block.Forward(x, seq, StepContext{}), r);
    return main + (o.aux_loss_coef * moe->stats().aux_loss + o.z_loss_coef * moe->stats().z_loss);
  };
  CheckLayer("block", x, block.Parameters(), loss, [&] { return block.Backward(r, 1.0); });
}

}  // namespace
}  // namespace sb
