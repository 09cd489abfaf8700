// MakeOptimizer, UsesWeightDecay, the State() naming contract, and resume:
// restoring parameters + State() tensors + step into fresh objects continues
// bitwise identically to a run that never stopped (the llm.c resume test),
// with gradient clipping and the LR schedule in the loop as the trainer does.
#include "optim/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

#include "optim/adafactor.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/schedule.h"
#include "optim/test_util.h"

namespace sb {
namespace {

using optim_test::BitwiseEqual;
using optim_test::Clone;
using optim_test::Normal;
using optim_test::SetValues;

switchboard::OptimizerConfig Named(switchboard::OptimizerConfig::Name name) {
  switchboard::OptimizerConfig c;
  c.set_name(name);
  return c;
}

TEST(OptimizerTest, MakeOptimizerPicksByName) {
  Parameter p = MakeParameter("w", ParamKind::kWeight, {2, 3}, DType::kF32, Device::kCpu);
  auto adamw = MakeOptimizer(Named(switchboard::OptimizerConfig::ADAMW), {&p});
  auto adafactor = MakeOptimizer(Named(switchboard::OptimizerConfig::ADAFACTOR), {&p});
  EXPECT_NE(dynamic_cast<AdamW*>(adamw.get()), nullptr);
  EXPECT_NE(dynamic_cast<Adafactor*>(adafactor.get()), nullptr);
  EXPECT_NE(dynamic_cast<AdamW*>(MakeOptimizer({}, {&p}).get()), nullptr);  // proto default
  EXPECT_EQ(adamw->step(), 0);
}

TEST(OptimizerTest, UsesWeightDecayRule) {
  auto param = [](ParamKind kind) {
    Parameter p;
    p.kind = kind;
    return p;
  };
  switchboard::OptimizerConfig c;  // defaults: decay_norms = decay_embeddings = false
  EXPECT_FALSE(UsesWeightDecay(c, param(ParamKind::kNorm)));
  EXPECT_FALSE(UsesWeightDecay(c, param(ParamKind::kEmbedding)));
  EXPECT_TRUE(UsesWeightDecay(c, param(ParamKind::kWeight)));
  EXPECT_TRUE(UsesWeightDecay(c, param(ParamKind::kRouter)));
  EXPECT_TRUE(UsesWeightDecay(c, param(ParamKind::kExpert)));
  c.set_decay_norms(true);
  EXPECT_TRUE(UsesWeightDecay(c, param(ParamKind::kNorm)));
  EXPECT_FALSE(UsesWeightDecay(c, param(ParamKind::kEmbedding)));
  c.set_decay_embeddings(true);
  EXPECT_TRUE(UsesWeightDecay(c, param(ParamKind::kEmbedding)));
}

// A small model's worth of parameters: every kind, f32 and f64, 1-D, 2-D and
// an expert stack.
struct Model {
  std::vector<Parameter> params;
  Model() {
    params.push_back(MakeParameter("model.embed_tokens.weight", ParamKind::kEmbedding, {10, 6},
                                   DType::kF32, Device::kCpu));
    params.push_back(MakeParameter("model.norm.weight", ParamKind::kNorm, {6}, DType::kF32,
                                   Device::kCpu));
    params.push_back(MakeParameter("model.layers.0.self_attn.q_proj.weight", ParamKind::kWeight,
                                   {6, 6}, DType::kF64, Device::kCpu));
    params.push_back(MakeParameter("model.layers.0.block_sparse_moe.gate.weight",
                                   ParamKind::kRouter, {4, 6}, DType::kF32, Device::kCpu));
    params.push_back(MakeParameter("model.layers.0.block_sparse_moe.experts.{expert}.w1.weight",
                                   ParamKind::kExpert, {2, 5, 6}, DType::kF32, Device::kCpu, 2));
    for (size_t k = 0; k < params.size(); ++k) {
      SetValues(params[k].value, Normal(k, params[k].value.numel(), 0.1));
    }
  }
  std::vector<Parameter*> ptrs() {
    std::vector<Parameter*> out;
    for (Parameter& p : params) out.push_back(&p);
    return out;
  }
  // What the trainer does for step `step`: grads, clip, lr, update.
  void TrainStep(Optimizer& opt, int64_t step, int64_t total) {
    for (size_t k = 0; k < params.size(); ++k) {
      SetValues(params[k].grad, Normal(1000 + 100 * step + k, params[k].grad.numel()));
    }
    const double norm = std::sqrt(GradSquaredNorm(ptrs()));
    ClipGradients(ptrs(), norm, 1.0);
    switchboard::ScheduleConfig schedule;
    schedule.set_warmup_steps(2);
    opt.Step(LearningRate(schedule, 1e-2, step, total));
  }
};

TEST(OptimizerTest, StateNamesOrderAndShapes) {
  Model m;
  switchboard::OptimizerConfig adamw_config = Named(switchboard::OptimizerConfig::ADAMW);
  auto adamw = MakeOptimizer(adamw_config, m.ptrs());
  const auto a = adamw->State();
  ASSERT_EQ(a.size(), 10u);
  EXPECT_EQ(a[0].first, "model.embed_tokens.weight.exp_avg");
  EXPECT_EQ(a[1].first, "model.embed_tokens.weight.exp_avg_sq");
  EXPECT_EQ(a[9].first, "model.layers.0.block_sparse_moe.experts.{expert}.w1.weight.exp_avg_sq");
  EXPECT_EQ(a[9].second.shape(), (Shape{2, 5, 6}));
  EXPECT_EQ(a[4].second.dtype(), DType::kF64);  // q_proj is f64: so is its state

  switchboard::OptimizerConfig af_config = Named(switchboard::OptimizerConfig::ADAFACTOR);
  af_config.set_adafactor_beta1(0.9);
  auto af = MakeOptimizer(af_config, m.ptrs());
  const auto f = af->State();
  const std::vector<std::pair<std::string, Shape>> want = {
      {"model.embed_tokens.weight.row", {10}},
      {"model.embed_tokens.weight.col", {6}},
      {"model.embed_tokens.weight.exp_avg", {10, 6}},
      {"model.norm.weight.v", {6}},
      {"model.norm.weight.exp_avg", {6}},
      {"model.layers.0.self_attn.q_proj.weight.row", {6}},
      {"model.layers.0.self_attn.q_proj.weight.col", {6}},
      {"model.layers.0.self_attn.q_proj.weight.exp_avg", {6, 6}},
      {"model.layers.0.block_sparse_moe.gate.weight.row", {4}},
      {"model.layers.0.block_sparse_moe.gate.weight.col", {6}},
      {"model.layers.0.block_sparse_moe.gate.weight.exp_avg", {4, 6}},
      {"model.layers.0.block_sparse_moe.experts.{expert}.w1.weight.row", {2, 5}},
      {"model.layers.0.block_sparse_moe.experts.{expert}.w1.weight.col", {2, 6}},
      {"model.layers.0.block_sparse_moe.experts.{expert}.w1.weight.exp_avg", {2, 5, 6}}};
  ASSERT_EQ(f.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(f[i].first, want[i].first);
    EXPECT_EQ(f[i].second.shape(), want[i].second) << want[i].first;
  }
  // Without momentum there is no exp_avg slot.
  EXPECT_EQ(MakeOptimizer(Named(switchboard::OptimizerConfig::ADAFACTOR), m.ptrs())->State().size(),
            9u);
}

// Runs `total` steps straight, and again as `stop` steps, a save (values,
// State copies, step), fresh parameters and optimizer, a restore and the
// remaining steps; params and state must match bit for bit. With `restore`
// false the step count is not restored, which must show (the test can fail).
void CheckResume(const switchboard::OptimizerConfig& config, bool restore_step,
                 bool expect_identical) {
  const int64_t total = 7, stop = 3;
  Model straight;
  auto opt = MakeOptimizer(config, straight.ptrs());
  for (int64_t step = 0; step < total; ++step) straight.TrainStep(*opt, step, total);

  Model first;
  auto opt1 = MakeOptimizer(config, first.ptrs());
  for (int64_t step = 0; step < stop; ++step) first.TrainStep(*opt1, step, total);
  std::vector<Tensor> saved_values;
  for (const Parameter& p : first.params) saved_values.push_back(Clone(p.value));
  std::vector<std::pair<std::string, Tensor>> saved_state;
  for (const auto& [name, tensor] : opt1->State()) saved_state.emplace_back(name, Clone(tensor));
  const int64_t saved_step = opt1->step();
  ASSERT_EQ(saved_step, stop);

  Model resumed;  // fresh init, then overwritten from the save
  for (size_t k = 0; k < resumed.params.size(); ++k) {
    ops::Copy(saved_values[k], resumed.params[k].value);
  }
  auto opt2 = MakeOptimizer(config, resumed.ptrs());
  auto state = opt2->State();
  ASSERT_EQ(state.size(), saved_state.size());
  for (size_t i = 0; i < state.size(); ++i) {
    ASSERT_EQ(state[i].first, saved_state[i].first);
    ops::Copy(saved_state[i].second, state[i].second);
  }
  if (restore_step) opt2->set_step(saved_step);
  for (int64_t step = stop; step < total; ++step) resumed.TrainStep(*opt2, step, total);

  bool all_equal = true;
  for (size_t k = 0; k < straight.params.size(); ++k) {
    const auto equal = BitwiseEqual(straight.params[k].value, resumed.params[k].value);
    all_equal = all_equal && equal;
    if (expect_identical) {
      EXPECT_TRUE(equal) << straight.params[k].name;
    }
  }
  const auto a = opt->State(), b = opt2->State();
  for (size_t i = 0; i < a.size(); ++i) {
    const auto equal = BitwiseEqual(a[i].second, b[i].second);
    all_equal = all_equal && equal;
    if (expect_identical) {
      EXPECT_TRUE(equal) << a[i].first;
    }
  }
  EXPECT_EQ(all_equal, expect_identical);
  if (restore_step) {
    EXPECT_EQ(opt2->step(), total);
  }
}

TEST(OptimizerTest, AdamWResumeIsBitwiseIdentical) {
  switchboard::OptimizerConfig config = Named(switchboard::OptimizerConfig::ADAMW);
  CheckResume(config, /*restore_step=*/true, /*expect_identical=*/true);
  CheckResume(config, /*restore_step=*/false, /*expect_identical=*/false);
}

TEST(OptimizerTest, AdafactorResumeIsBitwiseIdentical) {
  switchboard::OptimizerConfig config = Named(switchboard::OptimizerConfig::ADAFACTOR);
  CheckResume(config, true, true);
  CheckResume(config, false, false);
  config.set_adafactor_beta1(0.9);
  CheckResume(config, true, true);
}

}  // namespace
}  // namespace sb
