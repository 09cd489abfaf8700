// Chunks of a dispatch plan (host arithmetic): chunk c of C takes rows
// [n c / C, n (c + 1) / C) of every block, so the chunks partition every
// block, in order, and sender and receiver agree without exchanging counts.
// The pipelined exchange itself runs under mpirun (tests/mpi/dispatcher_test.cc).
#include "parallel/pipelined_experts.h"

#include <gtest/gtest.h>

namespace sb {
namespace {

TEST(ChunkRows, ChunksPartitionEveryBlockInOrder) {
  DispatchPlan plan;
  plan.send_rows_per_expert = {0, 1, 7, 3, 10, 2};  // E = 6 over ep = 3 (L = 2)
  plan.recv_rows = {4, 0, 5, 1, 9, 2};
  for (int chunks : {1, 2, 3, 4, 11}) {
    std::vector<int64_t> next_first(6, 0), sent(6, 0), received(6, 0);
    for (int c = 0; c < chunks; ++c) {
      const ChunkRows rows = MakeChunkRows(plan, 3, c, chunks);
      int64_t per_local[2] = {0, 0};
      for (int e = 0; e < 6; ++e) {
        EXPECT_EQ(rows.send_first[e], next_first[e]) << "contiguous chunks, expert " << e;
        next_first[e] += rows.send_rows_per_expert[e];
        sent[e] += rows.send_rows_per_expert[e];
        received[e] += rows.recv_rows[e];
        per_local[e % 2] += rows.recv_rows[e];
        // Balanced: chunk sizes of one block differ by at most one row.
        EXPECT_LE(rows.send_rows_per_expert[e], (plan.send_rows_per_expert[e] + chunks - 1) / chunks);
      }
      EXPECT_EQ(rows.rows_per_local_expert, (std::vector<int64_t>{per_local[0], per_local[1]}));
    }
    EXPECT_EQ(sent, plan.send_rows_per_expert) << chunks << " chunks";
    EXPECT_EQ(received, plan.recv_rows) << chunks << " chunks";
  }
  // The receiver's split of a block equals the sender's split of the same block.
  DispatchPlan sender;
  sender.send_rows_per_expert = {7, 7};
  sender.recv_rows = {7, 7};
  for (int c = 0; c < 3; ++c) {
    const ChunkRows rows = MakeChunkRows(sender, 1, c, 3);
    EXPECT_EQ(rows.send_rows_per_expert, rows.recv_rows);
  }
}

}  // namespace
}  // namespace sb
