#include "moe/layers/experts.h"

#include "moe/layers/swiglu_mlp.h"

namespace sb {
namespace {
// Expert e's [rows, cols] matrix inside a [E_local, rows, cols] stack.
Tensor Slice(const Tensor& stack, int64_t e) {
  return stack.Rows(e, e + 1).Reshape({stack.dim(1), stack.dim(2)});
}
}  // namespace

Experts::Experts(const std::string& prefix, int64_t num_local, int64_t first_expert,
                 int64_t d_model, int64_t ffn_dim, DType dtype, Device device)
    : w1(MakeParameter(prefix + "{expert}.w1.weight", ParamKind::kExpert,
                       {num_local, ffn_dim, d_model}, dtype, device, first_expert)),
      w3(MakeParameter(prefix + "{expert}.w3.weight", ParamKind::kExpert,
                       {num_local, ffn_dim, d_model}, dtype, device, first_expert)),
      w2(MakeParameter(prefix + "{expert}.w2.weight", ParamKind::kExpert,
                       {num_local, d_model, ffn_dim}, dtype, device, first_expert)) {}

SwigluActivations Experts::Activations(const Tensor& gate, const Tensor& up, const Tensor& act,
                                       int64_t begin, int64_t end) const {
  SwigluActivations acts{gate.Rows(begin, end), up.Rows(begin, end), act.Rows(begin, end)};
  if (dropout_keys_.defined()) {
    acts.dropout_keys = dropout_keys_.Rows(begin, end);
    acts.dropout_rate = dropout_rate_;
  }
  return acts;
}

Tensor Experts::Forward(const Tensor& x, const std::vector<int64_t>& rows_per_expert,
                        const Tensor& dropout_keys, double dropout_rate) {
  SB_CHECK_EQ(static_cast<int64_t>(rows_per_expert.size()), w1.value.dim(0));
  x_ = x;
  rows_ = rows_per_expert;
  dropout_keys_ = dropout_keys;
  dropout_rate_ = dropout_rate;
  const int64_t n = x.dim(0), f = w1.value.dim(1);
  const DType dt = x.dtype();
  const Device dev = x.device();
  Tensor gate = gate_.Get({n, f}, dt, dev), up = up_.Get({n, f}, dt, dev), act = act_.Get({n, f}, dt, dev);
  Tensor y = y_.Get(x.shape(), dt, dev);
  // One GEMM chain per expert over its contiguous rows (a grouped GEMM).
  int64_t begin = 0;
  for (size_t e = 0; e < rows_.size(); ++e) {
    const int64_t end = begin + rows_[e];
    if (end > begin) {
      const SwigluActivations acts = Activations(gate, up, act, begin, end);
      SwigluMlpForward(x.Rows(begin, end), Slice(w1.value, e), Slice(w3.value, e),
                       Slice(w2.value, e), acts, y.Rows(begin, end));
    }
    begin = end;
  }
  SB_CHECK_EQ(begin, n);
  return y;
}

Tensor Experts::Backward(const Tensor& dy) {
  const int64_t n = x_.dim(0), f = w1.value.dim(1);
  const DType dt = x_.dtype();
  const Device dev = x_.device();
  Tensor gate = gate_.Get({n, f}, dt, dev), up = up_.Get({n, f}, dt, dev), act = act_.Get({n, f}, dt, dev);
  Tensor dgate = dgate_.Get({n, f}, dt, dev), dup = dup_.Get({n, f}, dt, dev);
  Tensor dx = dx_.Get(x_.shape(), dt, dev);
  int64_t begin = 0;
  for (size_t e = 0; e < rows_.size(); ++e) {
    const int64_t end = begin + rows_[e];
    if (end > begin) {
      const SwigluActivations acts = Activations(gate, up, act, begin, end);
      SwigluMlpBackward(x_.Rows(begin, end), Slice(w1.value, e), Slice(w3.value, e),
                        Slice(w2.value, e), acts, dy.Rows(begin, end), Slice(w1.grad, e),
                        Slice(w3.grad, e), Slice(w2.grad, e), dx.Rows(begin, end),
                        dgate.Rows(begin, end), dup.Rows(begin, end));
    }
    begin = end;
  }
  return dx;
}

}  // namespace sb
