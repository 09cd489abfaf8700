// Expert-parallel token dispatch over an EP group (Megatron-Core's
// MoEAlltoAllTokenDispatcher, in its three phases; DESIGN.md "Parallelism").
//
// The MoE layer hands over rows grouped by GLOBAL expert (its local
// prepare). Experts of one EP rank are contiguous ([r*E/ep, (r+1)*E/ep)), so
// that order is already grouped by destination rank and needs no permute.
//   Plan:     all-to-all of the per-expert row counts inside the EP group
//             (every rank learns how many rows each source sends to each of
//             its local experts).
//   Dispatch: all-to-all-v of the rows; the receive buffer is grouped by
//             source rank, then local expert; the local finish regroups it
//             to local-expert-major order (the order Experts::Forward
//             wants: expert l's rows from source 0, 1, ...).
//   Combine:  the exact inverse (regroup to source-major, all-to-all-v back),
//             so rows return to the positions they left.
// Dispatch and Combine are permutations and each other's transpose: the MoE
// layer's backward uses Dispatch for the gradient of Combine and vice versa.
// The regroup is skipped when ep == 1 or E_local == 1 (orders coincide).
#pragma once

#include <cstdint>
#include <vector>

#include "moe/layers/token_dispatcher.h"
#include "parallel/communicator.h"

namespace sb {

// Copies the received rows between source-major ([ep][L] blocks, the
// all-to-all's receive order) and local-expert-major ([L][ep] blocks, the
// order Experts::Forward takes). recv_rows [ep * L]: rows from source s for
// local expert l at s * L + l.
void RegroupRows(const std::vector<int64_t>& recv_rows, int ep, int local_experts,
                 const Tensor& from, const Tensor& to, bool to_expert_major);

// Time and volume of the dispatcher's calls since ResetStats (step breakdown).
struct DispatcherStats {
  double plan_s = 0, dispatch_s = 0, combine_s = 0;
  int64_t dispatch_calls = 0, combine_calls = 0;
  int64_t rows_sent = 0;  // rows this rank sent to other ranks (both directions)
};

class AllToAllDispatcher : public TokenDispatcher {
 public:
  // ep_group must outlive the dispatcher; num_experts = global E, divisible
  // by ep_group.size().
  AllToAllDispatcher(Communicator& ep_group, int num_experts);

  int ep_size() const override { return ep_.size(); }
  int ep_rank() const override { return ep_.rank(); }
  DispatchPlan Plan(const std::vector<int64_t>& send_rows_per_expert) override;
  void Dispatch(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) override;
  void Combine(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) override;

  const DispatcherStats& stats() const { return stats_; }
  void ResetStats() { stats_ = DispatcherStats(); }

 private:
  // [ep] rows to / from each member of the EP group.
  std::vector<int64_t> SendRowsPerRank(const DispatchPlan& plan) const;
  std::vector<int64_t> RecvRowsPerRank(const DispatchPlan& plan) const;
  bool NeedsRegroup() const { return ep_.size() > 1 && local_experts_ > 1; }

  Communicator& ep_;
  int num_experts_;
  int local_experts_;
  ScratchTensor staging_;  // [total_recv, D] source-major rows
  DispatcherStats stats_;
};

}  // namespace sb
