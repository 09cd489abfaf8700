// Global gradient-norm clipping (Pascanu et al. 2013).
#pragma once

#include <vector>

#include "moe/core/parameter.h"

namespace sb {

// Sum of squared gradient entries over params (this rank's shards only).
double GradSquaredNorm(const std::vector<Parameter*>& params);
// Scales every gradient by min(1, max_norm / norm) given the global norm;
// max_norm <= 0 disables. Returns the scale applied.
double ClipGradients(const std::vector<Parameter*>& params, double global_norm, double max_norm);

}  // namespace sb
