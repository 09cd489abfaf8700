// Optimizers update parameters in place from their accumulated gradients.
// The trainer computes the learning rate (schedule.h) and clips gradients
// (grad_clip.h) before Step.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "configs/switchboard.pb.h"
#include "moe/core/parameter.h"

namespace sb {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every parameter with learning rate lr; increments step().
  virtual void Step(double lr) = 0;
  // Updates done so far (the bias-correction / decay-rate step count).
  virtual int64_t step() const = 0;
  // Named state tensors for checkpoints: "<param name>.<slot>" (for example
  // "model.norm.weight.exp_avg"), in a fixed order. Expert slots keep the
  // "{expert}" placeholder and the stack layout of their parameter.
  virtual std::vector<std::pair<std::string, Tensor>> State() = 0;
  virtual void set_step(int64_t step) = 0;
};

// AdamW or Adafactor as configured; params must outlive the optimizer.
std::unique_ptr<Optimizer> MakeOptimizer(const switchboard::OptimizerConfig& config,
                                         std::vector<Parameter*> params);

// Whether weight decay applies to a parameter under this config.
bool UsesWeightDecay(const switchboard::OptimizerConfig& config, const Parameter& param);

}  // namespace sb
