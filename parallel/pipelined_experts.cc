// Pipelined dispatch / experts / combine (see the header).
#include "parallel/pipelined_experts.h"

#include <memory>

#include "moe/ops/ops.h"
#include "parallel/all_to_all_dispatcher.h"

namespace sb {
namespace {

int64_t ChunkBegin(int64_t n, int c, int chunks) { return n * c / chunks; }

// Rows per member for blocks given per global expert (experts of a member are contiguous).
std::vector<int64_t> PerMember(const std::vector<int64_t>& per_expert, int members) {
  std::vector<int64_t> rows(members, 0);
  const int per_member = static_cast<int>(per_expert.size()) / members;
  for (size_t i = 0; i < per_expert.size(); ++i) rows[i / per_member] += per_expert[i];
  return rows;
}

int64_t Sum(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

}  // namespace

ChunkRows MakeChunkRows(const DispatchPlan& plan, int ep, int chunk, int chunks) {
  SB_CHECK(chunks >= 1 && chunk >= 0 && chunk < chunks) << "chunk " << chunk << " of " << chunks;
  const int E = static_cast<int>(plan.send_rows_per_expert.size());
  SB_CHECK(ep >= 1 && E % ep == 0 && static_cast<int>(plan.recv_rows.size()) == E)
      << "MakeChunkRows: " << E << " experts over " << ep << " ranks";
  const int L = E / ep;
  ChunkRows c;
  for (int e = 0; e < E; ++e) {
    const int64_t n = plan.send_rows_per_expert[e];
    const int64_t begin = ChunkBegin(n, chunk, chunks), end = ChunkBegin(n, chunk + 1, chunks);
    c.send_first.push_back(begin);
    c.send_rows_per_expert.push_back(end - begin);
  }
  c.rows_per_local_expert.assign(L, 0);
  for (int i = 0; i < E; ++i) {
    const int64_t n = plan.recv_rows[i];
    const int64_t rows = ChunkBegin(n, chunk + 1, chunks) - ChunkBegin(n, chunk, chunks);
    c.recv_rows.push_back(rows);
    c.rows_per_local_expert[i % L] += rows;
  }
  return c;
}

PipelinedExperts::PipelinedExperts(Communicator& ep_group, int num_experts)
    : ep_(ep_group), num_experts_(num_experts), local_experts_(num_experts / ep_group.size()) {
  SB_CHECK(num_experts >= 1 && num_experts % ep_group.size() == 0)
      << num_experts << " experts over an EP group of " << ep_group.size();
}

void PipelinedExperts::Run(const DispatchPlan& plan, const Tensor& src, int chunks,
                           const ExpertFn& experts, const Tensor& dst) {
  SB_CHECK(chunks >= 1) << "chunks = " << chunks;
  SB_CHECK(src.ndim() == 2 && dst.ndim() == 2 && src.dim(0) == plan.total_send &&
           dst.dim(0) == plan.total_send && src.dim(1) == dst.dim(1))
      << "PipelinedExperts::Run " << src.ToString() << " -> " << dst.ToString();
  const int ep = ep_.size(), L = local_experts_, E = num_experts_;
  const int64_t D = src.dim(1);
  const DType dt = src.dtype();
  const Device dev = src.device();
  if (static_cast<int>(buffers_.size()) < chunks) buffers_.resize(chunks);
  std::vector<int64_t> block_start(E, 0);  // first row of each expert block in src / dst
  for (int e = 1; e < E; ++e) block_start[e] = block_start[e - 1] + plan.send_rows_per_expert[e - 1];

  std::vector<ChunkRows> rows(chunks);
  std::vector<std::vector<int64_t>> send_per_rank(chunks), recv_per_rank(chunks);
  std::vector<Tensor> recv(chunks), out(chunks);
  std::vector<std::unique_ptr<PendingCollective>> dispatched(chunks), combined(chunks);
  // Packs chunk c's rows (expert order = destination order) and starts its dispatch.
  auto start_dispatch = [&](int c) {
    rows[c] = MakeChunkRows(plan, ep, c, chunks);
    send_per_rank[c] = PerMember(rows[c].send_rows_per_expert, ep);
    std::vector<int64_t> recv_from(ep, 0);
    for (int i = 0; i < ep * L; ++i) recv_from[i / L] += rows[c].recv_rows[i];
    recv_per_rank[c] = recv_from;
    Buffers& b = buffers_[c];
    Tensor send = b.send.Get({Sum(send_per_rank[c]), D}, dt, dev);
    int64_t at = 0;
    for (int e = 0; e < E; ++e) {
      const int64_t n = rows[c].send_rows_per_expert[e];
      if (n == 0) continue;
      const int64_t from = block_start[e] + rows[c].send_first[e];
      ops::Copy(src.Rows(from, from + n), send.Rows(at, at + n));
      at += n;
    }
    recv[c] = b.recv.Get({Sum(recv_from), D}, dt, dev);
    dispatched[c] = ep_.AllToAllVAsync(send, send_per_rank[c], recv[c], recv_from);
  };

  start_dispatch(0);
  for (int c = 0; c < chunks; ++c) {
    dispatched[c]->Wait();
    if (c + 1 < chunks) start_dispatch(c + 1);
    Buffers& b = buffers_[c];
    const int64_t n = recv[c].dim(0);
    const bool regroup = ep > 1 && L > 1;
    Tensor x = regroup ? b.x.Get({n, D}, dt, dev) : recv[c];
    if (regroup) RegroupRows(rows[c].recv_rows, ep, L, recv[c], x, /*to_expert_major=*/true);
    Tensor y = b.y.Get({n, D}, dt, dev);
    experts(x, rows[c].rows_per_local_expert, y);
    Tensor back = regroup ? b.back.Get({n, D}, dt, dev) : y;
    if (regroup) RegroupRows(rows[c].recv_rows, ep, L, y, back, /*to_expert_major=*/false);
    out[c] = b.out.Get({Sum(send_per_rank[c]), D}, dt, dev);
    combined[c] = ep_.AllToAllVAsync(back, recv_per_rank[c], out[c], send_per_rank[c]);
    // MPI moves started collectives only inside MPI calls: let them.
    for (int k = 0; k <= c; ++k) {
      if (combined[k]) combined[k]->Poll();
    }
    if (c + 1 < chunks) dispatched[c + 1]->Poll();
  }
  for (int c = 0; c < chunks; ++c) {
    combined[c]->Wait();
    int64_t at = 0;
    for (int e = 0; e < E; ++e) {
      const int64_t n = rows[c].send_rows_per_expert[e];
      if (n == 0) continue;
      const int64_t to = block_start[e] + rows[c].send_first[e];
      ops::Copy(out[c].Rows(at, at + n), dst.Rows(to, to + n));
      at += n;
    }
  }
}

}  // namespace sb
