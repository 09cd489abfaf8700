// AllToAllDispatcher (see the header for the phases and layouts).
#include "parallel/all_to_all_dispatcher.h"

#include <chrono>

#include "moe/ops/ops.h"

namespace sb {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t Sum(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

}  // namespace

AllToAllDispatcher::AllToAllDispatcher(Communicator& ep_group, int num_experts)
    : ep_(ep_group), num_experts_(num_experts), local_experts_(num_experts / ep_group.size()) {
  SB_CHECK(num_experts >= 1 && num_experts % ep_group.size() == 0)
      << num_experts << " experts over an EP group of " << ep_group.size();
}

DispatchPlan AllToAllDispatcher::Plan(const std::vector<int64_t>& send_rows_per_expert) {
  const double start = Now();
  SB_CHECK_EQ(static_cast<int>(send_rows_per_expert.size()), num_experts_)
      << "Plan: one count per global expert";
  const int ep = ep_.size(), L = local_experts_;
  DispatchPlan plan;
  plan.send_rows_per_expert = send_rows_per_expert;
  plan.total_send = Sum(send_rows_per_expert);
  // Member p gets our counts for its experts [p*L, (p+1)*L); we get [ep, L].
  Tensor send_counts = Tensor::FromVector(send_rows_per_expert, {num_experts_});
  Tensor recv_counts = Tensor::Zeros({num_experts_}, DType::kI64);
  const std::vector<int64_t> per_member(ep, L);
  ep_.AllToAllV(send_counts, per_member, recv_counts, per_member);
  const int64_t* r = recv_counts.data<int64_t>();
  plan.recv_rows.assign(r, r + num_experts_);
  plan.rows_per_local_expert.assign(L, 0);
  for (int s = 0; s < ep; ++s)
    for (int l = 0; l < L; ++l) plan.rows_per_local_expert[l] += plan.recv_rows[s * L + l];
  plan.total_recv = Sum(plan.recv_rows);
  stats_.plan_s += Now() - start;
  return plan;
}

std::vector<int64_t> AllToAllDispatcher::SendRowsPerRank(const DispatchPlan& plan) const {
  std::vector<int64_t> rows(ep_.size(), 0);
  for (int e = 0; e < num_experts_; ++e) rows[e / local_experts_] += plan.send_rows_per_expert[e];
  return rows;
}

std::vector<int64_t> AllToAllDispatcher::RecvRowsPerRank(const DispatchPlan& plan) const {
  std::vector<int64_t> rows(ep_.size(), 0);
  for (int i = 0; i < num_experts_; ++i) rows[i / local_experts_] += plan.recv_rows[i];
  return rows;
}

void RegroupRows(const std::vector<int64_t>& recv_rows, int ep, int local_experts,
                 const Tensor& from, const Tensor& to, bool to_expert_major) {
  const int L = local_experts;
  SB_CHECK_EQ(static_cast<int64_t>(recv_rows.size()), int64_t{ep} * L) << "RegroupRows counts";
  // Start row of block (s, l) in source-major and in expert-major order.
  std::vector<int64_t> source_major(static_cast<size_t>(ep) * L), expert_major(source_major.size());
  int64_t offset = 0;
  for (int s = 0; s < ep; ++s)
    for (int l = 0; l < L; ++l) {
      source_major[s * L + l] = offset;
      offset += recv_rows[s * L + l];
    }
  offset = 0;
  for (int l = 0; l < L; ++l)
    for (int s = 0; s < ep; ++s) {
      expert_major[s * L + l] = offset;
      offset += recv_rows[s * L + l];
    }
  for (int i = 0; i < ep * L; ++i) {
    const int64_t n = recv_rows[i];
    if (n == 0) continue;
    const int64_t a = to_expert_major ? source_major[i] : expert_major[i];
    const int64_t b = to_expert_major ? expert_major[i] : source_major[i];
    ops::Copy(from.Rows(a, a + n), to.Rows(b, b + n));
  }
}

void AllToAllDispatcher::Dispatch(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) {
  const double start = Now();
  SB_CHECK(src.ndim() == 2 && dst.ndim() == 2 && src.dim(0) == plan.total_send &&
           dst.dim(0) == plan.total_recv && src.dim(1) == dst.dim(1))
      << "Dispatch " << src.ToString() << " -> " << dst.ToString() << " (plan: send "
      << plan.total_send << ", recv " << plan.total_recv << " rows)";
  const std::vector<int64_t> send = SendRowsPerRank(plan), recv = RecvRowsPerRank(plan);
  if (!NeedsRegroup()) {
    ep_.AllToAllV(src, send, dst, recv);
  } else {
    Tensor staging = staging_.Get(dst.shape(), dst.dtype(), dst.device());
    ep_.AllToAllV(src, send, staging, recv);
    RegroupRows(plan.recv_rows, ep_.size(), local_experts_, staging, dst, /*to_expert_major=*/true);
  }
  stats_.rows_sent += plan.total_send - send[ep_.rank()];
  ++stats_.dispatch_calls;
  stats_.dispatch_s += Now() - start;
}

void AllToAllDispatcher::Combine(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) {
  const double start = Now();
  SB_CHECK(src.ndim() == 2 && dst.ndim() == 2 && src.dim(0) == plan.total_recv &&
           dst.dim(0) == plan.total_send && src.dim(1) == dst.dim(1))
      << "Combine " << src.ToString() << " -> " << dst.ToString() << " (plan: send "
      << plan.total_send << ", recv " << plan.total_recv << " rows)";
  const std::vector<int64_t> send = SendRowsPerRank(plan), recv = RecvRowsPerRank(plan);
  if (!NeedsRegroup()) {
    ep_.AllToAllV(src, recv, dst, send);
  } else {
    Tensor staging = staging_.Get(src.shape(), src.dtype(), src.device());
    RegroupRows(plan.recv_rows, ep_.size(), local_experts_, src, staging, /*to_expert_major=*/false);
    ep_.AllToAllV(staging, recv, dst, send);
  }
  stats_.rows_sent += plan.total_recv - recv[ep_.rank()];
  ++stats_.combine_calls;
  stats_.combine_s += Now() - start;
}

}  // namespace sb
