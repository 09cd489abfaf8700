// This rank's experts: E_local SwiGLU MLPs stored as stacks so that a GPU can
// run them as one grouped GEMM. Names follow HF Mixtral
// (block_sparse_moe.experts.N.{w1,w3,w2}.weight) with N the global expert id.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "moe/core/parameter.h"

namespace sb {

class Experts {
 public:
  // prefix: "model.layers.3.block_sparse_moe.experts."
  Experts(const std::string& prefix, int64_t num_local, int64_t first_expert, int64_t d_model,
          int64_t ffn_dim, DType dtype, Device device);
  // x [N, D] grouped by local expert, rows_per_expert [E_local] -> y [N, D]
  Tensor Forward(const Tensor& x, const std::vector<int64_t>& rows_per_expert);
  // dy [N, D] -> dx [N, D]; weight grads +=.
  Tensor Backward(const Tensor& dy);

  Parameter w1;  // [E_local, F, D] gate
  Parameter w3;  // [E_local, F, D] up
  Parameter w2;  // [E_local, D, F] down

 private:
  // body(local expert, first row, end row) for every expert with rows (see experts.cc).
  void ForEachExpert(Device device, const std::function<void(size_t e, int64_t begin, int64_t end)>& body) const;

  Tensor x_;
  std::vector<int64_t> rows_;
  ScratchTensor gate_, up_, act_, y_, dx_, dgate_, dup_;
};

}  // namespace sb
