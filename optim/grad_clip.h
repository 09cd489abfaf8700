// Global gradient-norm clipping (Pascanu et al. 2013, Algorithm 1) with the
// conventions of torch.nn.utils.clip_grad_norm_. Local only: the trainer
// reduces the squared norm over ranks (parallel/) before clipping.
#pragma once

#include <vector>

#include "moe/core/parameter.h"

namespace sb {

// Sum of squared gradient entries over params (this rank's shards only),
// accumulated in f64. On the CPU the summation order is fixed, so the result
// does not depend on the thread count (resumed runs clip identically).
double GradSquaredNorm(const std::vector<Parameter*>& params);
// Scales every gradient by min(1, max_norm / (global_norm + 1e-6)) given the
// global norm (not squared); max_norm <= 0 disables. Returns the scale
// applied (1 when nothing changed). A NaN norm yields a NaN scale and NaN
// gradients, as in PyTorch: the caller should check and skip the step.
double ClipGradients(const std::vector<Parameter*>& params, double global_norm, double max_norm);

}  // namespace sb
