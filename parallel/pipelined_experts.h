// Dispatch -> experts -> combine in pipelined chunks: the all-to-all of chunk
// c + 1 is in flight while the experts run on chunk c, and chunk c's results
// travel back while chunk c + 1 computes (Tutel's pipelined all-to-all,
// Megatron-Core's MoE communication overlap at chunk granularity).
//
// Chunk c of a block of n rows (one source's rows for one expert) is rows
// [n * c / C, n * (c + 1) / C): sender and receiver both know n from the
// plan, so chunks need no extra count exchange. Each chunk is a complete
// dispatch of a smaller batch: rows are packed per expert into a contiguous
// send buffer (grouped by destination), exchanged with AllToAllVAsync,
// regrouped to local-expert-major order, run through the experts, and sent
// back the same way; the results are unpacked into the caller's rows. Rows
// are independent through an expert, so the output equals the unchunked
// path's (bit for bit when the expert function is computed row by row).
//
// Whether it pays depends on the transport: NCCL runs the chunk's all-to-all
// on a communication stream concurrently with the expert GEMMs; MPI on host
// memory advances non-blocking collectives only inside MPI calls and copies
// with the same cores the GEMMs use (measured in docs/parallel.md,
// benchmarks/dispatch_overlap_bench.cc). Forward only: the MoE layer keeps
// the unchunked path (docs/parallel.md says what integrating it needs).
#pragma once

#include <functional>
#include <vector>

#include "moe/layers/token_dispatcher.h"
#include "parallel/communicator.h"

namespace sb {

// The rows of chunk c of C of every block (host arithmetic, tested alone).
struct ChunkRows {
  std::vector<int64_t> send_first;            // [E] first row of the chunk inside each expert block
  std::vector<int64_t> send_rows_per_expert;  // [E] rows of each expert block in the chunk
  std::vector<int64_t> recv_rows;             // [ep * L] rows from each source per local expert
  std::vector<int64_t> rows_per_local_expert; // [L]
};
ChunkRows MakeChunkRows(const DispatchPlan& plan, int ep, int chunk, int chunks);

class PipelinedExperts {
 public:
  // y [n, D] = experts(x [n, D]) for rows grouped by local expert
  // (rows_per_local_expert [L]); called once per chunk.
  using ExpertFn = std::function<void(const Tensor& x, const std::vector<int64_t>& rows_per_local_expert,
                                      const Tensor& y)>;
  // ep_group must outlive this; num_experts divisible by its size.
  PipelinedExperts(Communicator& ep_group, int num_experts);

  // dst [total_send, D] = Combine(experts(Dispatch(src [total_send, D]))) in
  // `chunks` >= 1 pieces. Collective over the EP group (same chunks everywhere).
  void Run(const DispatchPlan& plan, const Tensor& src, int chunks, const ExpertFn& experts,
           const Tensor& dst);

 private:
  struct Buffers {
    ScratchTensor send, recv, x, y, back, out;
  };
  Communicator& ep_;
  int num_experts_, local_experts_;
  std::vector<Buffers> buffers_;  // one set per chunk (chunks are in flight together)
};

}  // namespace sb
