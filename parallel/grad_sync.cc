// Bucketed gradient all-reduce and the global gradient norm (grad_sync.h).
#include "parallel/grad_sync.h"

#include <chrono>

#include "moe/ops/ops.h"

namespace sb {
namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

ParamSplit SplitByReplication(const std::vector<Parameter*>& params) {
  ParamSplit split;
  for (Parameter* p : params) (p->is_expert() ? split.expert : split.replicated).push_back(p);
  return split;
}

GradSync::GradSync(const std::vector<Parameter*>& params, ProcessGrid& grid,
                   int64_t bucket_bytes) {
  SB_CHECK_GE(bucket_bytes, 1) << "bucket size";
  // One open bucket per communicator; a bucket closes when the next tensor
  // would overflow it or has another dtype.
  Communicator* comms[2] = {&grid.world(), &grid.edp_group()};
  Bucket open[2];
  for (int k = 0; k < 2; ++k) open[k].comm = comms[k];
  auto close = [&](int k) {
    if (!open[k].params.empty()) buckets_.push_back(open[k]);
    open[k] = Bucket();
    open[k].comm = comms[k];
  };
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    Parameter* p = *it;
    const int k = p->is_expert() ? 1 : 0;
    if (comms[k]->size() == 1) continue;  // nothing to sum
    const Tensor& g = p->grad;
    Bucket& b = open[k];
    const int64_t bytes = (b.numel + g.numel()) * static_cast<int64_t>(DTypeSize(g.dtype()));
    if (!b.params.empty() && (b.dtype != g.dtype() || bytes > bucket_bytes)) close(k);
    open[k].params.push_back(p);
    open[k].numel += g.numel();
    open[k].dtype = g.dtype();
  }
  close(0);
  close(1);
}

void GradSync::Reduce(const Bucket& bucket) {
  bytes_ += bucket.numel * static_cast<int64_t>(DTypeSize(bucket.dtype));
  if (bucket.params.size() == 1) {
    bucket.comm->AllReduceSum(bucket.params[0]->grad);
    return;
  }
  const Device device = bucket.params[0]->grad.device();
  Tensor flat = flat_.Get({bucket.numel}, bucket.dtype, device);
  int64_t offset = 0;
  for (Parameter* p : bucket.params) {
    const int64_t n = p->grad.numel();
    ops::Copy(p->grad.Reshape({n}), flat.Rows(offset, offset + n));
    offset += n;
  }
  bucket.comm->AllReduceSum(flat);
  offset = 0;
  for (Parameter* p : bucket.params) {
    const int64_t n = p->grad.numel();
    ops::Copy(flat.Rows(offset, offset + n), p->grad.Reshape({n}));
    offset += n;
  }
}

void GradSync::Sync() {
  const double start = Now();
  for (const Bucket& bucket : buckets_) Reduce(bucket);
  seconds_ += Now() - start;
}

double GlobalGradSquaredNorm(double replicated_sq, double expert_sq, Communicator& ep_group) {
  if (ep_group.size() == 1) return replicated_sq + expert_sq;
  Tensor mine = Tensor::FromVector(std::vector<double>{expert_sq}, {1});
  Tensor all = Tensor::Zeros({ep_group.size()}, DType::kF64);
  ep_group.AllGather(mine, all);
  double total = replicated_sq;
  for (int r = 0; r < ep_group.size(); ++r) total += all.data<double>()[r];
  return total;
}

}  // namespace sb
