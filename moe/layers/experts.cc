#include "moe/layers/experts.h"

#include "moe/ops/ops.h"

namespace sb {

Experts::Experts(const std::string& prefix, int64_t num_local, int64_t first_expert,
                 int64_t d_model, int64_t ffn_dim, DType dtype, Device device)
    : w1(MakeParameter(prefix + "{expert}.w1.weight", ParamKind::kExpert,
                       {num_local, ffn_dim, d_model}, dtype, device, first_expert)),
      w3(MakeParameter(prefix + "{expert}.w3.weight", ParamKind::kExpert,
                       {num_local, ffn_dim, d_model}, dtype, device, first_expert)),
      w2(MakeParameter(prefix + "{expert}.w2.weight", ParamKind::kExpert,
                       {num_local, d_model, ffn_dim}, dtype, device, first_expert)) {}

Tensor Experts::Forward(const Tensor& x, const std::vector<int64_t>& rows_per_expert,
                        int64_t pad_rows, const Tensor& dropout_keys, double dropout_rate) {
  const int64_t num_local = w1.value.dim(0);
  SB_CHECK_EQ(static_cast<int64_t>(rows_per_expert.size()), num_local);
  const DType dt = x.dtype();
  const Device dev = x.device();
  rows_ = rows_per_expert;
  dropout_keys_ = dropout_keys;
  dropout_rate_ = dropout_rate;
  padded_ = false;
  if (pad_rows > 0 && num_local <= 256) {  // (PaddedRowIndex's GPU limit)
    bool fits = true;
    for (int64_t r : rows_) fits = fits && r <= pad_rows;
    padded_ = fits;
  }
  if (!padded_) {
    x_ = x;
    Tensor y = y_.Get(x.shape(), dt, dev);
    RunForward(x, y);
    return y;
  }
  // Row m of expert e goes to row e * pad_rows + (its rank within e); the
  // padding rows stay zero, so they add nothing to any weight gradient.
  pad_index_ = pad_index_buf_.Get({x.dim(0)}, DType::kI32, dev);
  ops::PaddedRowIndex(rows_, pad_rows, pad_index_);
  rows_.assign(static_cast<size_t>(num_local), pad_rows);
  x_ = x_pad_.Get({num_local * pad_rows, x.dim(1)}, dt, dev);
  ops::Fill(x_, 0.0);
  ops::ScatterAddRows(x, pad_index_, x_);
  if (dropout_keys_.defined()) {  // padding rows get key 0 (their act is 0 anyway)
    Tensor keys = keys_pad_.Get({x_.dim(0), dropout_keys.dim(1)}, dropout_keys.dtype(), dev);
    ops::Fill(keys, 0.0);
    ops::ScatterAddRows(dropout_keys, pad_index_, keys);
    dropout_keys_ = keys;
  }
  Tensor y_pad = y_pad_.Get(x_.shape(), dt, dev);
  RunForward(x_, y_pad);
  Tensor y = y_.Get(x.shape(), dt, dev);
  ops::GatherRows(y_pad, pad_index_, y);
  return y;
}

void Experts::RunForward(const Tensor& x, const Tensor& y) {
  const int64_t n = x.dim(0), f = w1.value.dim(1);
  const DType dt = x.dtype();
  const Device dev = x.device();
  Tensor gate = gate_.Get({n, f}, dt, dev), up = up_.Get({n, f}, dt, dev), act = act_.Get({n, f}, dt, dev);
  // SwiGLU over every expert's contiguous rows at once: each GEMM is one
  // grouped (or, with equal rows, strided-batched) call over the experts.
  ops::GroupedGemm(x, false, w1.compute(), true, gate, rows_);
  ops::GroupedGemm(x, false, w3.compute(), true, up, rows_);
  ops::SwigluForward(gate, up, act);
  if (dropout_keys_.defined()) ops::KeyedDropout(dropout_keys_, dropout_rate_, act);
  ops::GroupedGemm(act, false, w2.compute(), true, y, rows_);
}

Tensor Experts::Backward(const Tensor& dy_rows) {
  const int64_t n = x_.dim(0), f = w1.value.dim(1);
  const DType dt = x_.dtype();
  const Device dev = x_.device();
  Tensor dy = dy_rows;
  if (padded_) {
    dy = dy_pad_.Get(x_.shape(), dt, dev);
    ops::Fill(dy, 0.0);
    ops::ScatterAddRows(dy_rows, pad_index_, dy);
  }
  Tensor gate = gate_.Get({n, f}, dt, dev), up = up_.Get({n, f}, dt, dev), act = act_.Get({n, f}, dt, dev);
  Tensor dgate = dgate_.Get({n, f}, dt, dev), dup = dup_.Get({n, f}, dt, dev);
  Tensor dx = dx_.Get(x_.shape(), dt, dev);
  // As SwigluMlpBackward, grouped over experts; dact reuses dup's buffer.
  const Tensor& dact = dup;
  ops::GroupedGemm(dy, false, w2.compute(), false, dact, rows_);
  ops::GroupedGemm(dy, true, act, false, w2.grad, rows_, 1.0, 1.0);
  // act = mask * silu(gate) * up: the same mask scales the gradient.
  if (dropout_keys_.defined()) ops::KeyedDropout(dropout_keys_, dropout_rate_, dact);
  ops::SwigluBackward(gate, up, dact, dgate, dup);
  ops::GroupedGemm(dgate, true, x_, false, w1.grad, rows_, 1.0, 1.0);
  ops::GroupedGemm(dup, true, x_, false, w3.grad, rows_, 1.0, 1.0);
  ops::GroupedGemm(dgate, false, w1.compute(), false, dx, rows_);
  ops::GroupedGemm(dup, false, w3.compute(), false, dx, rows_, 1.0, 1.0);
  if (!padded_) return dx;
  Tensor dx_rows = dx_rows_.Get(dy_rows.shape(), dt, dev);
  ops::GatherRows(dx, pad_index_, dx_rows);
  return dx_rows;
}

}  // namespace sb
