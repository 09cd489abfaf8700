// Optimizers update parameters in place from their accumulated gradients.
// The trainer computes the learning rate (schedule.h) and clips gradients
// (grad_clip.h) before Step. Implementations: adamw.h (torch.optim.AdamW),
// adafactor.h (T5X Adafactor); CPU, f32 or f64 parameters, state in the
// parameter dtype. See docs/optim.md.
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
  // "model.norm.weight.exp_avg"), in a fixed order: parameters in
  // construction order, each one's slots in the order its header lists.
  // Expert slots keep the "{expert}" placeholder and the stack layout of
  // their parameter (dim 0 = local expert). The tensors alias the live state:
  // a checkpoint copies out of them, a restore copies into them and then
  // calls set_step(saved step()); the run then continues bitwise identically.
  virtual std::vector<std::pair<std::string, Tensor>> State() = 0;
  // Sets the number of updates done (resume); the next Step uses t = step + 1.
  virtual void set_step(int64_t step) = 0;
};

// AdamW or Adafactor as configured; params must outlive the optimizer.
std::unique_ptr<Optimizer> MakeOptimizer(const switchboard::OptimizerConfig& config,
                                         std::vector<Parameter*> params);

// Whether weight decay applies to a parameter under this config: not to
// kNorm unless decay_norms, not to kEmbedding unless decay_embeddings,
// always to kWeight, kRouter and kExpert.
bool UsesWeightDecay(const switchboard::OptimizerConfig& config, const Parameter& param);

}  // namespace sb
