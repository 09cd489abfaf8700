// MoeLayerMask: which decoder blocks get a mixture-of-experts FFN. An
// explicit moe.moe_layers list wins; otherwise every moe_layer_interval-th
// block (Switch / GShard "every other layer" is interval 2, ST-MoE's "every
// fourth" is 4; 0 = dense model). Indices outside [0, num_layers) are
// ignored here and rejected by ValidateConfig.
#include "configs/config.h"

namespace sb {

std::vector<bool> MoeLayerMask(const TrainConfig& config) {
  const int num_layers = config.model().num_layers();
  std::vector<bool> mask(num_layers > 0 ? num_layers : 0, false);
  const auto& moe = config.moe();
  if (moe.moe_layers_size() > 0) {
    for (int layer : moe.moe_layers()) {
      if (layer >= 0 && layer < num_layers) mask[layer] = true;
    }
    return mask;
  }
  const int interval = moe.moe_layer_interval();
  if (interval <= 0) return mask;
  for (int i = 0; i < num_layers; ++i) mask[i] = (i + 1) % interval == 0;
  return mask;
}

}  // namespace sb
