// The optimizers' GPU updates against their CPU loops (f32): AdamW and
// Adafactor (factored expert stacks with several slices, a matrix, an
// unfactored vector; with and without momentum), several steps with
// weight decay, to f32 rounding; and the GPU update is deterministic.
// Skips without a GPU.
#include <cmath>
#include <memory>
#include <vector>

#include "moe/core/device_memory.h"
#include "optim/optimizer.h"
#include "optim/test_util.h"

namespace sb {
namespace {

using optim_test::AllClose;
using optim_test::Normal;
using optim_test::SetValues;

struct Params {
  std::vector<Parameter> storage;
  std::vector<Parameter*> list;
};

// The same parameters and gradients on `device`.
Params Make(Device device) {
  Params p;
  const std::vector<std::pair<Shape, ParamKind>> shapes = {
      {{3, 40, 30}, ParamKind::kExpert}, {{50, 20}, ParamKind::kWeight}, {{70}, ParamKind::kNorm}};
  p.storage.reserve(shapes.size());
  for (size_t i = 0; i < shapes.size(); ++i) {
    p.storage.push_back(MakeParameter("p" + std::to_string(i), shapes[i].second, shapes[i].first,
                                      DType::kF32, device));
  }
  for (Parameter& q : p.storage) p.list.push_back(&q);
  return p;
}

void SetStep(Params& p, int step) {
  for (size_t i = 0; i < p.storage.size(); ++i) {
    Parameter& q = p.storage[i];
    const int64_t n = q.value.numel();
    Tensor v = Tensor::Empty(q.value.shape(), DType::kF32), g = Tensor::Empty(q.value.shape(), DType::kF32);
    SetValues(v, Normal(StreamKey({i, 1}), n, 0.3));
    SetValues(g, Normal(StreamKey({i, 2, static_cast<uint64_t>(step)}), n, 1e-2));
    if (step == 0) ops::Copy(v, q.value);
    ops::Copy(g, q.grad);
  }
}

std::vector<double> Values(const Params& p) {
  std::vector<double> out;
  for (const Parameter& q : p.storage) {
    const std::vector<double> v = q.value.ToDoubles();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

std::vector<double> RunSteps(const switchboard::OptimizerConfig& config, Device device) {
  Params p = Make(device);
  std::unique_ptr<Optimizer> opt = MakeOptimizer(config, p.list);
  for (int step = 0; step < 4; ++step) {
    SetStep(p, step);
    opt->Step(1e-2 * (step + 1));
  }
  std::vector<double> out = Values(p);
  for (const auto& [name, t] : opt->State()) {
    const std::vector<double> v = t.ToDoubles();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

class OptimizerOnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaBuilt()) GTEST_SKIP() << "built without CUDA (SB_CUDA=OFF)";
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device or driver on this machine";
  }
  static void Compare(const switchboard::OptimizerConfig& c) {
    const std::vector<double> cpu = RunSteps(c, Device::kCpu);
    const std::vector<double> gpu = RunSteps(c, Device::kCuda);
    // f32 element math in the same order (the GPU may fuse multiply-adds)
    // and f64 statistics summed in other orders: a few f32 ulps per step.
    std::vector<double> tol(cpu.size());
    for (size_t i = 0; i < cpu.size(); ++i) tol[i] = 1e-5 * (std::abs(cpu[i]) + 1e-3);
    EXPECT_TRUE(AllClose(cpu, gpu, tol));
    EXPECT_EQ(RunSteps(c, Device::kCuda), gpu) << "the GPU update is not deterministic";
  }
};

TEST_F(OptimizerOnGpu, AdamWMatchesCpu) {
  switchboard::OptimizerConfig c;
  c.set_name(switchboard::OptimizerConfig::ADAMW);
  c.set_weight_decay(0.1);
  Compare(c);
}

TEST_F(OptimizerOnGpu, AdafactorMatchesCpuWithAndWithoutMomentum) {
  for (double beta1 : {0.0, 0.9}) {
    switchboard::OptimizerConfig c;
    c.set_name(switchboard::OptimizerConfig::ADAFACTOR);
    c.set_weight_decay(0.01);
    c.set_adafactor_beta1(beta1);
    Compare(c);
  }
}

}  // namespace
}  // namespace sb
