// How an MoE layer reaches the ranks that hold its experts. The layer only
// sees this interface; parallel/ implements it over MPI or NCCL all-to-all,
// LocalDispatcher below serves a single expert-parallel rank. Phases follow
// Megatron-Core: the layer prepares rows grouped by global expert (local
// prepare), Plan exchanges counts, Dispatch / Combine move rows (all-to-all-v)
// and regroup them by local expert (local finish). Backward reuses the same
// plan: the gradient of Dispatch is Combine and vice versa.
#pragma once

#include <cstdint>
#include <vector>

#include "moe/core/tensor.h"

namespace sb {

struct DispatchPlan {
  // [E] rows this rank sends for each global expert, in expert order.
  std::vector<int64_t> send_rows_per_expert;
  // [ep, E_local] rows this rank receives from each source rank for each of
  // its local experts.
  std::vector<int64_t> recv_rows;
  // [E_local] rows per local expert in the dispatched buffer, which is
  // grouped by local expert and, within one, by source rank.
  std::vector<int64_t> rows_per_local_expert;
  int64_t total_send = 0;
  int64_t total_recv = 0;
};

class TokenDispatcher {
 public:
  virtual ~TokenDispatcher() = default;
  virtual int ep_size() const = 0;
  virtual int ep_rank() const = 0;
  // Collective over the expert-parallel group.
  virtual DispatchPlan Plan(const std::vector<int64_t>& send_rows_per_expert) = 0;
  // src [total_send, D] grouped by global expert -> dst [total_recv, D].
  virtual void Dispatch(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) = 0;
  // src [total_recv, D] -> dst [total_send, D]; the inverse permutation.
  virtual void Combine(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) = 0;
};

// One expert-parallel rank holds every expert: dispatch is a copy.
class LocalDispatcher : public TokenDispatcher {
 public:
  int ep_size() const override { return 1; }
  int ep_rank() const override { return 0; }
  DispatchPlan Plan(const std::vector<int64_t>& send_rows_per_expert) override;
  void Dispatch(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) override;
  void Combine(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) override;
};

}  // namespace sb
