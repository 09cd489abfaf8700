// MakeOptimizer, the weight-decay rule shared by both optimizers, and the
// parameter checks of optim/reduce.h.
#include "optim/optimizer.h"

#include "optim/adafactor.h"
#include "optim/adamw.h"
#include "optim/reduce.h"

namespace sb {

std::unique_ptr<Optimizer> MakeOptimizer(const switchboard::OptimizerConfig& config,
                                         std::vector<Parameter*> params) {
  switch (config.name()) {
    case switchboard::OptimizerConfig::ADAMW:
      return std::make_unique<AdamW>(config, std::move(params));
    case switchboard::OptimizerConfig::ADAFACTOR:
      return std::make_unique<Adafactor>(config, std::move(params));
  }
  SB_CHECK(false) << "unknown optimizer.name " << static_cast<int>(config.name());
  return nullptr;
}

// GPT-style practice (Megatron, nanoGPT, T5X/Flaxformer configs): norm scales
// and embeddings are left undecayed unless asked; every matrix decays.
bool UsesWeightDecay(const switchboard::OptimizerConfig& config, const Parameter& param) {
  switch (param.kind) {
    case ParamKind::kNorm: return config.decay_norms();
    case ParamKind::kEmbedding: return config.decay_embeddings();
    case ParamKind::kWeight:
    case ParamKind::kRouter:
    case ParamKind::kExpert: return true;
  }
  return true;
}

namespace optim_internal {

void CheckOptimizable(const Parameter& param) {
  const Tensor& value = param.value;
  const Tensor& grad = param.grad;
  SB_CHECK(value.defined() && grad.defined()) << param.name << ": value and grad must be allocated";
  SB_CHECK(value.dtype() == DType::kF32 || (value.dtype() == DType::kF64 && value.device() == Device::kCpu))
      << param.name << ": the optimizers update f32 parameters (or f64 on the CPU), got "
      << value.ToString();
  SB_CHECK(grad.dtype() == value.dtype() && grad.shape() == value.shape() &&
           grad.device() == value.device())
      << param.name << ": grad " << grad.ToString() << " does not match value " << value.ToString();
}

}  // namespace optim_internal
}  // namespace sb
