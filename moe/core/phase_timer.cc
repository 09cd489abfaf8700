#include "moe/core/phase_timer.h"

namespace sb {

bool PhaseTimer::enabled_ = false;
double PhaseTimer::seconds_[static_cast<int>(Phase::kCount)] = {};

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kEmbedding: return "embedding";
    case Phase::kNorm: return "norm";
    case Phase::kAttention: return "attention";
    case Phase::kRouter: return "router";
    case Phase::kPermute: return "permute";
    case Phase::kDispatch: return "dispatch";
    case Phase::kExperts: return "experts";
    case Phase::kCombine: return "combine";
    case Phase::kUnpermute: return "unpermute";
    case Phase::kLmHeadLoss: return "lm_head_loss";
    case Phase::kCount: break;
  }
  return "?";
}

void PhaseTimer::Enable(bool on) { enabled_ = on; }

void PhaseTimer::Reset() {
  for (double& s : seconds_) s = 0.0;
}

}  // namespace sb
