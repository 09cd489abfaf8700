// Hierarchical all-to-all-v (see the header for the stages and their cost).
#include "parallel/hierarchical_all_to_all.h"

#include "absl/strings/str_cat.h"
#include "moe/ops/ops.h"

namespace sb {
namespace {

int64_t Sum(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

// Exclusive prefix sums: the offset of each block in a buffer of blocks.
std::vector<int64_t> Offsets(const std::vector<int64_t>& rows) {
  std::vector<int64_t> offsets(rows.size());
  int64_t at = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    offsets[i] = at;
    at += rows[i];
  }
  return offsets;
}

// `like`'s shape with `rows` rows.
Shape WithRows(const Tensor& like, int64_t rows) {
  Shape shape = like.shape();
  SB_CHECK(!shape.empty()) << "HierarchicalCommunicator: a 0-d tensor has no rows";
  shape[0] = rows;
  return shape;
}

// to = blocks (offset[i], rows[i]) of `from`, one after the other.
void GatherBlocks(const Tensor& from, const std::vector<int64_t>& offset,
                  const std::vector<int64_t>& rows, const Tensor& to) {
  int64_t at = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] == 0) continue;
    ops::Copy(from.Rows(offset[i], offset[i] + rows[i]), to.Rows(at, at + rows[i]));
    at += rows[i];
  }
  SB_CHECK_EQ(at, to.dim(0)) << "HierarchicalCommunicator: blocks do not fill the buffer";
}

}  // namespace

HierarchicalPlan MakeHierarchicalPlan(int nodes, int ranks_per_node,
                                      const std::vector<int64_t>& send_rows,
                                      const std::vector<int64_t>& peer_rows,
                                      const std::vector<int64_t>& recv_rows) {
  const int N = nodes, G = ranks_per_node;
  const size_t members = static_cast<size_t>(N) * G;
  SB_CHECK(send_rows.size() == members && peer_rows.size() == members &&
           recv_rows.size() == members)
      << "MakeHierarchicalPlan: " << N << " nodes x " << G << " ranks need " << members
      << " counts each (got " << send_rows.size() << ", " << peer_rows.size() << ", "
      << recv_rows.size() << ")";
  HierarchicalPlan plan;
  plan.nodes = N;
  plan.ranks_per_node = G;
  // Stage 1: the caller's blocks in member order (m, h) are sent in order (h, m).
  const std::vector<int64_t> send_offset = Offsets(send_rows);
  plan.stage1_send.assign(G, 0);
  for (int h = 0; h < G; ++h) {
    for (int m = 0; m < N; ++m) {
      const int i = m * G + h;
      plan.pack_offset.push_back(send_offset[i]);
      plan.pack_rows.push_back(send_rows[i]);
      plan.stage1_send[h] += send_rows[i];
    }
  }
  // Stage 1 receives blocks (g, m); stage 2 sends them in order (m, g).
  const std::vector<int64_t> relay_offset = Offsets(peer_rows);
  plan.stage1_recv.assign(G, 0);
  for (int g = 0; g < G; ++g)
    for (int m = 0; m < N; ++m) plan.stage1_recv[g] += peer_rows[g * N + m];
  plan.stage2_send.assign(N, 0);
  for (int m = 0; m < N; ++m) {
    for (int g = 0; g < G; ++g) {
      plan.relay_offset.push_back(relay_offset[g * N + m]);
      plan.relay_rows.push_back(peer_rows[g * N + m]);
      plan.stage2_send[m] += peer_rows[g * N + m];
    }
  }
  // Stage 2 receives, from the rail member of node n, the rows of (n, 0..G-1)
  // in that order: exactly the flat receive layout.
  plan.stage2_recv.assign(N, 0);
  for (int n = 0; n < N; ++n)
    for (int g = 0; g < G; ++g) plan.stage2_recv[n] += recv_rows[n * G + g];
  return plan;
}

absl::StatusOr<std::unique_ptr<HierarchicalCommunicator>> HierarchicalCommunicator::Create(
    Communicator& group, int ranks_per_node) {
  if (ranks_per_node < 1 || group.size() % ranks_per_node != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hierarchical all-to-all: ", ranks_per_node, " ranks per node do not divide the '",
        group.name(), "' group of ", group.size(),
        " ranks (each group must span whole nodes: set parallel.ranks_per_node, or "
        "parallel.all_to_all = FLAT)"));
  }
  auto h = std::unique_ptr<HierarchicalCommunicator>(
      new HierarchicalCommunicator(group, ranks_per_node));
  const int i = group.rank();
  // Split orders members by key: node members by local index, rail members by node.
  h->node_ = group.Split(i / ranks_per_node, i, group.name() + "-node");
  h->rail_ = group.Split(i % ranks_per_node, i, group.name() + "-rail");
  SB_CHECK_EQ(h->node_->rank(), i % ranks_per_node);
  SB_CHECK_EQ(h->rail_->rank(), i / ranks_per_node);
  return h;
}

void HierarchicalCommunicator::AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows,
                                         const Tensor& recv,
                                         const std::vector<int64_t>& recv_rows) {
  if (nodes_ == 1 || ranks_per_node_ == 1) {
    group_.AllToAllV(send, send_rows, recv, recv_rows);
    return;
  }
  const int N = nodes_, G = ranks_per_node_;
  SB_CHECK(static_cast<int>(send_rows.size()) == N * G &&
           static_cast<int>(recv_rows.size()) == N * G)
      << "HierarchicalCommunicator::AllToAllV: one count per member";
  SB_CHECK(!send.shape().empty() && !recv.shape().empty() && Sum(send_rows) == send.dim(0) &&
           Sum(recv_rows) == recv.dim(0))
      << "HierarchicalCommunicator::AllToAllV: counts must add up to the rows of "
      << send.ToString() << " and " << recv.ToString();
  // Counts first: local peer h learns what we send to (m, h) for every node m.
  std::vector<int64_t> out(static_cast<size_t>(G) * N);
  for (int h = 0; h < G; ++h)
    for (int m = 0; m < N; ++m) out[h * N + m] = send_rows[m * G + h];
  Tensor out_counts = Tensor::FromVector(out, {G * N});
  Tensor in_counts = Tensor::Zeros({G * N}, DType::kI64);
  const std::vector<int64_t> per_peer(G, N);
  node_->AllToAllV(out_counts, per_peer, in_counts, per_peer);
  const int64_t* in = in_counts.data<int64_t>();
  const HierarchicalPlan plan = MakeHierarchicalPlan(
      N, G, send_rows, std::vector<int64_t>(in, in + G * N), recv_rows);

  Tensor packed = packed_.Get(WithRows(send, Sum(plan.pack_rows)), send.dtype(), send.device());
  GatherBlocks(send, plan.pack_offset, plan.pack_rows, packed);
  const int64_t relayed_rows = Sum(plan.stage1_recv);
  Tensor relayed = relayed_.Get(WithRows(send, relayed_rows), send.dtype(), send.device());
  node_->AllToAllV(packed, plan.stage1_send, relayed, plan.stage1_recv);
  Tensor regrouped = regrouped_.Get(WithRows(send, relayed_rows), send.dtype(), send.device());
  GatherBlocks(relayed, plan.relay_offset, plan.relay_rows, regrouped);
  rail_->AllToAllV(regrouped, plan.stage2_send, recv, plan.stage2_recv);
}

}  // namespace sb
