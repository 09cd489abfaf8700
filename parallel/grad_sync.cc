// Bucketed gradient all-reduce and the global gradient norm (grad_sync.h).
#include "parallel/grad_sync.h"

#include <algorithm>
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
    if (!open[k].params.empty()) buckets_.push_back(std::move(open[k]));
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
  for (size_t b = 0; b < buckets_.size(); ++b)
    for (const Parameter* p : buckets_[b].params) bucket_of_.emplace_back(p, static_cast<int>(b));
  std::sort(bucket_of_.begin(), bucket_of_.end());
}

int GradSync::BucketOf(const Parameter* p) const {
  auto it = std::lower_bound(bucket_of_.begin(), bucket_of_.end(), std::make_pair(p, -1));
  return it != bucket_of_.end() && it->first == p ? it->second : -1;
}

Tensor GradSync::Flat(Bucket& b, bool own_buffer) {
  const Device device = b.params[0]->grad.device();
  return (own_buffer ? b.flat : flat_).Get({b.numel}, b.dtype, device);
}

void GradSync::Start(Bucket& b, bool overlap) {
  bytes_ += b.numel * static_cast<int64_t>(DTypeSize(b.dtype));
  // Without overlap the blocking call (MPI_Allreduce picks its own algorithm).
  auto reduce = [&](const Tensor& t) {
    if (overlap) {
      b.pending = b.comm->AllReduceSumAsync(t);
    } else {
      b.comm->AllReduceSum(t);
    }
  };
  if (b.params.size() == 1) {
    reduce(b.params[0]->grad);
    return;
  }
  Tensor flat = Flat(b, overlap);
  int64_t offset = 0;
  for (Parameter* p : b.params) {
    const int64_t n = p->grad.numel();
    ops::Copy(p->grad.Reshape({n}), flat.Rows(offset, offset + n));
    offset += n;
  }
  reduce(flat);
}

void GradSync::Finish(Bucket& b) {
  if (b.pending) {
    b.pending->Wait();
    b.pending.reset();
  }
  if (b.params.size() == 1) return;
  Tensor flat = Flat(b, overlapping_);
  int64_t offset = 0;
  for (Parameter* p : b.params) {
    const int64_t n = p->grad.numel();
    ops::Copy(flat.Rows(offset, offset + n), p->grad.Reshape({n}));
    offset += n;
  }
}

void GradSync::BeginOverlap() {
  SB_CHECK(!overlapping_) << "GradSync::BeginOverlap twice without Sync";
  overlapping_ = true;
  next_start_ = 0;
  started_early_ = 0;
  for (Bucket& b : buckets_) b.not_ready = static_cast<int>(b.params.size());
}

void GradSync::GradientsReady(const std::vector<Parameter*>& params) {
  if (!overlapping_) return;
  const double start = Now();
  for (const Parameter* p : params) {
    const int b = BucketOf(p);
    if (b < 0) continue;
    SB_CHECK(buckets_[b].not_ready > 0) << p->name << " reported ready twice in one backward";
    --buckets_[b].not_ready;
  }
  const int num = num_buckets();
  while (next_start_ < num && buckets_[next_start_].not_ready == 0) {
    Start(buckets_[next_start_++], /*overlap=*/true);
    ++started_early_;
  }
  // MPI moves non-blocking collectives only inside MPI calls: give the
  // started ones a chance (no-op for NCCL, whose streams run by themselves).
  for (int b = 0; b < next_start_; ++b)
    if (buckets_[b].pending) buckets_[b].pending->Poll();
  seconds_ += Now() - start;
}

void GradSync::Sync() {
  const double start = Now();
  if (overlapping_) {
    while (next_start_ < num_buckets()) Start(buckets_[next_start_++], /*overlap=*/true);
    for (Bucket& b : buckets_) Finish(b);
    overlapping_ = false;
  } else {
    // One bucket at a time through one reused buffer.
    for (Bucket& b : buckets_) {
      Start(b, /*overlap=*/false);
      Finish(b);
    }
  }
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
