// Hierarchical all-to-all-v for a group that spans several nodes (Tutel's
// 2D hierarchical all-to-all; DeepEP's normal-mode kernels route the same
// way, through the GPU of equal local index on the destination node).
//
// Members are numbered i = n * G + g: node n of the group, local index g,
// G = ranks_per_node consecutive members per node (ranks are placed node by
// node: mpirun --map-by ppr:G:node, srun --distribution=block).
//   stage 1, inside each node: member (n, g) sends to its local peer h every
//     row destined to (m, h), for every node m. Rows leave a node only from
//     the rank on the destination's rail (the same local index, the same NIC
//     on rail-optimised clusters);
//   stage 2, between nodes, inside rail h: (n, h) sends to (m, h) the rows of
//     every (n, g) destined to (m, h): one message per node pair and rail
//     instead of G * G small ones.
// Stage 2 receives in source-member order, so the result is laid out exactly
// as a flat AllToAllV's (tests/mpi/hierarchical_test.cc checks equality).
//
// What it costs: a count exchange inside the node ([N] counts per local
// peer) before the rows, two local regroups (copies of the rows sent) and two
// collectives. What it buys: each rank sends N - 1 inter-node messages of G
// blocks instead of (N - 1) * G single blocks, so latency terms fall by G and
// messages are G times larger (closer to the NIC's bandwidth), while the
// extra hop runs over NVLink, ~8x faster than the NIC
// (benchmarks/ep_cost_model.py prices both).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace sb {

// The two-stage schedule for one call, from this member's counts and the
// counts its local peers send it (host arithmetic, tested on its own).
struct HierarchicalPlan {
  int nodes = 1, ranks_per_node = 1;
  // [G] rows to / from each local peer in stage 1.
  std::vector<int64_t> stage1_send, stage1_recv;
  // [N] rows to / from the same-rail member of each node in stage 2.
  std::vector<int64_t> stage2_send, stage2_recv;
  // Stage-1 send buffer = blocks of the caller's send buffer (member order
  // m * G + h) taken in order (h, m): source row offset and rows of each.
  std::vector<int64_t> pack_offset, pack_rows;
  // Stage-2 send buffer = blocks of the stage-1 receive buffer (order
  // (g, m)) taken in order (m, g).
  std::vector<int64_t> relay_offset, relay_rows;
};

// send_rows [N * G]: rows this member sends to each member; peer_rows
// [G * N]: rows local peer g sends to (m, this member's local index), at
// g * N + m; recv_rows [N * G]: rows this member receives from each member.
HierarchicalPlan MakeHierarchicalPlan(int nodes, int ranks_per_node,
                                      const std::vector<int64_t>& send_rows,
                                      const std::vector<int64_t>& peer_rows,
                                      const std::vector<int64_t>& recv_rows);

class HierarchicalCommunicator : public Communicator {
 public:
  // group: the flat group (must outlive this); ranks_per_node must divide its
  // size. Collective over group (two Splits: node and rail sub-groups).
  static absl::StatusOr<std::unique_ptr<HierarchicalCommunicator>> Create(Communicator& group,
                                                                          int ranks_per_node);

  int rank() const override { return group_.rank(); }
  int size() const override { return group_.size(); }
  const std::string& name() const override { return group_.name(); }
  int nodes() const { return nodes_; }
  int ranks_per_node() const { return ranks_per_node_; }

  // Two stages (see above); flat when the group is one node or one rank per node.
  void AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override;
  // Everything else is the flat group's.
  void AllReduceSum(const Tensor& buf) override { group_.AllReduceSum(buf); }
  void AllGather(const Tensor& send, const Tensor& recv) override { group_.AllGather(send, recv); }
  void AllGatherV(const Tensor& send, const Tensor& recv,
                  const std::vector<int64_t>& recv_rows) override {
    group_.AllGatherV(send, recv, recv_rows);
  }
  void ReduceScatterSum(const Tensor& send, const Tensor& recv) override {
    group_.ReduceScatterSum(send, recv);
  }
  void Broadcast(const Tensor& buf, int root) override { group_.Broadcast(buf, root); }
  void Barrier() override { group_.Barrier(); }
  std::unique_ptr<Communicator> Split(int color, int key, const std::string& name) override {
    return group_.Split(color, key, name);
  }

 private:
  HierarchicalCommunicator(Communicator& group, int ranks_per_node)
      : group_(group), ranks_per_node_(ranks_per_node), nodes_(group.size() / ranks_per_node) {}

  Communicator& group_;
  int ranks_per_node_, nodes_;
  std::unique_ptr<Communicator> node_;  // the G members of this node, by local index
  std::unique_ptr<Communicator> rail_;  // the N members with this local index, by node
  ScratchTensor packed_, relayed_, regrouped_;
};

}  // namespace sb
