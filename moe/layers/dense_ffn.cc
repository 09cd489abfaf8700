#include "moe/layers/dense_ffn.h"

namespace sb {

DenseFfn::DenseFfn(const std::string& prefix, int64_t d_model, int64_t ffn_dim, DType dtype,
                   Device device)
    : gate_proj(MakeParameter(prefix + "gate_proj.weight", ParamKind::kWeight, {ffn_dim, d_model},
                              dtype, device)),
      up_proj(MakeParameter(prefix + "up_proj.weight", ParamKind::kWeight, {ffn_dim, d_model},
                            dtype, device)),
      down_proj(MakeParameter(prefix + "down_proj.weight", ParamKind::kWeight, {d_model, ffn_dim},
                              dtype, device)) {}

Tensor DenseFfn::Forward(const Tensor& x, const StepContext& /*ctx*/) {
  x_ = x;
  const Shape hidden = {x.dim(0), gate_proj.value.dim(0)};
  SwigluActivations acts{gate_.Get(hidden, x.dtype(), x.device()),
                         up_.Get(hidden, x.dtype(), x.device()),
                         act_.Get(hidden, x.dtype(), x.device())};
  Tensor y = y_.Get(x.shape(), x.dtype(), x.device());
  SwigluMlpForward(x, gate_proj.compute(), up_proj.compute(), down_proj.compute(), acts, y);
  return y;
}

Tensor DenseFfn::Backward(const Tensor& dy, double /*loss_scale*/) {
  const Shape hidden = {x_.dim(0), gate_proj.value.dim(0)};
  SwigluActivations acts{gate_.Get(hidden, x_.dtype(), x_.device()),
                         up_.Get(hidden, x_.dtype(), x_.device()),
                         act_.Get(hidden, x_.dtype(), x_.device())};
  Tensor dx = dx_.Get(x_.shape(), x_.dtype(), x_.device());
  SwigluMlpBackward(x_, gate_proj.compute(), up_proj.compute(), down_proj.compute(), acts, dy,
                    gate_proj.grad,
                    up_proj.grad, down_proj.grad, dx, dgate_.Get(hidden, x_.dtype(), x_.device()),
                    dup_.Get(hidden, x_.dtype(), x_.device()));
  return dx;
}

}  // namespace sb
