// Global gradient-norm clipping (Pascanu et al. 2013, "On the difficulty of
// training recurrent neural networks", Algorithm 1), as
// torch.nn.utils.clip_grad_norm_: g *= min(1, max_norm / (norm + 1e-6)).
#include "optim/grad_clip.h"

#include <cmath>

#include "moe/ops/dispatch.h"
#include "moe/ops/ops.h"
#include "optim/reduce.h"

namespace sb {

double GradSquaredNorm(const std::vector<Parameter*>& params) {
  double total = 0.0;
  // GPU gradients: fixed-order sums on the device and one read for all.
  std::vector<Tensor> device_grads;
  for (const Parameter* p : params)
    if (p->grad.device() != Device::kCpu) device_grads.push_back(p->grad);
  if (!device_grads.empty()) total += ops::SumSquaresOfAll(device_grads);
  for (const Parameter* p : params) {
    const Tensor& g = p->grad;
    if (g.device() != Device::kCpu) continue;
    // On the CPU, sum in a fixed order (optim/reduce.h) so that a resumed
    // run clips exactly like the uninterrupted one.
    ops::ForFloat(g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* x = g.data<T>();
      total += optim_internal::DeterministicSum(
          g.numel(), [&](int64_t i) { return static_cast<double>(x[i]) * x[i]; });
    });
  }
  return total;
}

double ClipGradients(const std::vector<Parameter*>& params, double global_norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  const double ratio = max_norm / (global_norm + 1e-6);
  // A NaN norm gives a NaN scale (and NaN gradients), as in PyTorch, so the
  // caller sees it instead of a silently unclipped step.
  if (!(ratio < 1.0) && !std::isnan(ratio)) return 1.0;
  for (Parameter* p : params) ops::Scale(p->grad, ratio);
  return ratio;
}

}  // namespace sb
