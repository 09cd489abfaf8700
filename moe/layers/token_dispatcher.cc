#include "moe/layers/token_dispatcher.h"

#include "moe/ops/ops.h"

namespace sb {

DispatchPlan LocalDispatcher::Plan(const std::vector<int64_t>& send_rows_per_expert) {
  DispatchPlan plan;
  plan.send_rows_per_expert = send_rows_per_expert;
  plan.recv_rows = send_rows_per_expert;
  plan.rows_per_local_expert = send_rows_per_expert;
  for (int64_t n : send_rows_per_expert) plan.total_send += n;
  plan.total_recv = plan.total_send;
  return plan;
}

void LocalDispatcher::Dispatch(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) {
  SB_CHECK(src.dim(0) == plan.total_send && dst.dim(0) == plan.total_recv)
      << "dispatch " << src.ToString() << " -> " << dst.ToString();
  ops::Copy(src, dst);
}

void LocalDispatcher::Combine(const DispatchPlan& plan, const Tensor& src, const Tensor& dst) {
  SB_CHECK(src.dim(0) == plan.total_recv && dst.dim(0) == plan.total_send)
      << "combine " << src.ToString() << " -> " << dst.ToString();
  ops::Copy(src, dst);
}

}  // namespace sb
