#include "moe/layers/rmsnorm.h"

#include "moe/ops/ops.h"

namespace sb {

RmsNorm::RmsNorm(std::string name, int64_t dim, double eps, DType dtype, Device device)
    : weight(MakeParameter(std::move(name), ParamKind::kNorm, {dim}, dtype, device)), eps_(eps) {
  InitConstant(weight, 1.0);
}

Tensor RmsNorm::Forward(const Tensor& x) {
  x_ = x;
  Tensor y = y_.Get(x.shape(), x.dtype(), x.device());
  Tensor rstd = rstd_.Get({x.dim(0)}, AccumDType(x.dtype()), x.device());
  ops::RmsNormForward(x, weight.compute(), eps_, y, rstd);
  return y;
}

Tensor RmsNorm::Backward(const Tensor& dy) {
  Tensor dx = dx_.Get(x_.shape(), x_.dtype(), x_.device());
  ops::RmsNormBackward(x_, weight.compute(),
                       rstd_.Get({x_.dim(0)}, AccumDType(x_.dtype()), x_.device()), dy, dx,
                       weight.grad);
  return dx;
}

}  // namespace sb
