// This rank's experts: E_local SwiGLU MLPs stored as stacks so that a GPU can
// run them as one grouped GEMM. Names follow HF Mixtral
// (block_sparse_moe.experts.N.{w1,w3,w2}.weight) with N the global expert id.
#pragma once

#include <string>
#include <vector>

#include "moe/core/parameter.h"
#include "moe/layers/swiglu_mlp.h"

namespace sb {

class Experts {
 public:
  // prefix: "model.layers.3.block_sparse_moe.experts."
  Experts(const std::string& prefix, int64_t num_local, int64_t first_expert, int64_t d_model,
          int64_t ffn_dim, DType dtype, Device device);
  // x [N, D] grouped by local expert, rows_per_expert [E_local] -> y [N, D].
  // pad_rows > 0 (a fixed capacity bound on every expert's rows): the
  // experts run on rows padded to pad_rows each, so that their GEMMs are
  // strided-batched (equal sizes) instead of grouped; the result is the same.
  // dropout_keys [N, 4] (ops::ExpertRowKeys, dispatched with the rows) turn
  // on expert dropout with dropout_rate; undefined: none.
  Tensor Forward(const Tensor& x, const std::vector<int64_t>& rows_per_expert,
                 int64_t pad_rows = 0, const Tensor& dropout_keys = Tensor(),
                 double dropout_rate = 0.0);
  // dy [N, D] -> dx [N, D]; weight grads +=.
  Tensor Backward(const Tensor& dy);

  Parameter w1;  // [E_local, F, D] gate
  Parameter w3;  // [E_local, F, D] up
  Parameter w2;  // [E_local, D, F] down

 private:
  // The MLPs over x [n, D] grouped by rows_ into y [n, D].
  void RunForward(const Tensor& x, const Tensor& y);

  Tensor x_;                   // the rows the GEMMs saw (padded or not)
  std::vector<int64_t> rows_;  // their groups
  bool padded_ = false;
  Tensor pad_index_;           // [N] i32: row m's padded row
  Tensor dropout_keys_;        // [rows of x_, 4] or undefined (no dropout)
  double dropout_rate_ = 0.0;
  ScratchTensor gate_, up_, act_, y_, dx_, dgate_, dup_;
  ScratchTensor pad_index_buf_, x_pad_, y_pad_, dy_pad_, dx_rows_, keys_pad_;
};

}  // namespace sb
