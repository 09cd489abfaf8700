#include "moe/layers/experts.h"

#include <omp.h>

#include <algorithm>

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

Tensor Experts::Forward(const Tensor& x, const std::vector<int64_t>& rows_per_expert) {
  SB_CHECK_EQ(static_cast<int64_t>(rows_per_expert.size()), w1.value.dim(0));
  x_ = x;
  rows_ = rows_per_expert;
  const int64_t n = x.dim(0), f = w1.value.dim(1);
  const DType dt = x.dtype();
  const Device dev = x.device();
  Tensor gate = gate_.Get({n, f}, dt, dev), up = up_.Get({n, f}, dt, dev), act = act_.Get({n, f}, dt, dev);
  Tensor y = y_.Get(x.shape(), dt, dev);
  // One GEMM chain per expert over its contiguous rows (a grouped GEMM).
  ForEachExpert(dev, [&](size_t e, int64_t begin, int64_t end) {
    SwigluActivations acts{gate.Rows(begin, end), up.Rows(begin, end), act.Rows(begin, end)};
    SwigluMlpForward(x.Rows(begin, end), Slice(w1.value, e), Slice(w3.value, e), Slice(w2.value, e), acts,
                     y.Rows(begin, end));
  });
  return y;
}

Tensor Experts::Backward(const Tensor& dy) {
  const int64_t n = x_.dim(0), f = w1.value.dim(1);
  const DType dt = x_.dtype();
  const Device dev = x_.device();
  Tensor gate = gate_.Get({n, f}, dt, dev), up = up_.Get({n, f}, dt, dev), act = act_.Get({n, f}, dt, dev);
  Tensor dgate = dgate_.Get({n, f}, dt, dev), dup = dup_.Get({n, f}, dt, dev);
  Tensor dx = dx_.Get(x_.shape(), dt, dev);
  ForEachExpert(dev, [&](size_t e, int64_t begin, int64_t end) {
    SwigluActivations acts{gate.Rows(begin, end), up.Rows(begin, end), act.Rows(begin, end)};
    SwigluMlpBackward(x_.Rows(begin, end), Slice(w1.value, e), Slice(w3.value, e), Slice(w2.value, e), acts,
                      dy.Rows(begin, end), Slice(w1.grad, e), Slice(w3.grad, e), Slice(w2.grad, e),
                      dx.Rows(begin, end), dgate.Rows(begin, end), dup.Rows(begin, end));
  });
  return dx;
}

void Experts::ForEachExpert(Device device,
                            const std::function<void(size_t e, int64_t begin, int64_t end)>& body) const {
  std::vector<int64_t> begin(rows_.size() + 1, 0);
  for (size_t e = 0; e < rows_.size(); ++e) begin[e + 1] = begin[e] + rows_[e];
  SB_CHECK_EQ(begin.back(), x_.dim(0));
  // On the CPU with several threads and at least two experts per thread,
  // the experts run side by side, each thread on whole experts with
  // single-threaded GEMMs (OpenBLAS's OpenMP build runs single-threaded inside
  // a parallel region), largest first: the small per-expert GEMMs of an MoE
  // layer lose more to splitting each one over the threads (a barrier and
  // duplicated packing per GEMM) than to uneven expert sizes. Each expert
  // then computes exactly what a one-thread run computes (a GEMM split over
  // threads may round differently; experts_test.cc checks the bits).
  // Otherwise one expert at a time, each GEMM using every thread.
  const int threads = omp_get_max_threads();
  std::vector<size_t> order;
  for (size_t e = 0; e < rows_.size(); ++e)
    if (rows_[e] > 0) order.push_back(e);
  if (device == Device::kCpu && threads > 1 && static_cast<int>(order.size()) >= 2 * threads &&
      !omp_in_parallel()) {
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rows_[a] > rows_[b]; });
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < order.size(); ++i) body(order[i], begin[order[i]], begin[order[i] + 1]);
    return;
  }
  for (size_t e : order) body(e, begin[e], begin[e + 1]);
}

}  // namespace sb
