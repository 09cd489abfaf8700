// RMSNorm (Zhang & Sennrich 2019) as in Llama: y = x / rms(x) * w.
#pragma once

#include <string>

#include "moe/core/parameter.h"

namespace sb {

class RmsNorm {
 public:
  RmsNorm(std::string name, int64_t dim, double eps, DType dtype, Device device);
  // x [T, D] -> y [T, D]; keeps x (a view, must stay alive) and 1/rms.
  Tensor Forward(const Tensor& x);
  // dy [T, D] -> dx [T, D]; weight.grad +=.
  Tensor Backward(const Tensor& dy);
  Parameter weight;  // [D], init 1

 private:
  double eps_;
  Tensor x_;
  ScratchTensor y_, rstd_, dx_;
};

}  // namespace sb
