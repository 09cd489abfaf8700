// The hierarchical all-to-all's schedule, as host arithmetic: every member's
// plan is built from a counts matrix, the two stages are simulated by moving
// labelled rows between per-member vectors, and every member must end with
// exactly the rows (and order) a flat all-to-all-v gives. The real collective
// runs under mpirun in tests/mpi/hierarchical_test.cc.
#include "parallel/hierarchical_all_to_all.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace sb {
namespace {

// A row is labelled by (source member, destination member, index in block).
struct Row {
  int from, to, k;
  bool operator==(const Row& o) const { return from == o.from && to == o.to && k == o.k; }
};

// Rows member `from` sends to member `to` (includes zeros and self-sends).
int64_t Count(int from, int to, int seed) { return (from * 7 + to * 3 + seed) % 4; }

void ExpectEqualsFlat(int N, int G, int seed) {
  const int W = N * G;
  // Every member's send buffer in member order, and the flat result.
  std::vector<std::vector<Row>> send(W), flat(W);
  for (int s = 0; s < W; ++s)
    for (int d = 0; d < W; ++d)
      for (int k = 0; k < Count(s, d, seed); ++k) send[s].push_back({s, d, k});
  for (int d = 0; d < W; ++d)
    for (int s = 0; s < W; ++s)
      for (int k = 0; k < Count(s, d, seed); ++k) flat[d].push_back({s, d, k});

  std::vector<HierarchicalPlan> plans(W);
  for (int i = 0; i < W; ++i) {
    const int local = i % G, node = i / G;
    std::vector<int64_t> send_rows(W), recv_rows(W), peer_rows(G * N);
    for (int p = 0; p < W; ++p) {
      send_rows[p] = Count(i, p, seed);
      recv_rows[p] = Count(p, i, seed);
    }
    for (int g = 0; g < G; ++g)
      for (int m = 0; m < N; ++m) peer_rows[g * N + m] = Count(node * G + g, m * G + local, seed);
    plans[i] = MakeHierarchicalPlan(N, G, send_rows, peer_rows, recv_rows);
  }
  // Stage 1 inside each node: pack, then member (n, g) -> (n, h) with stage1_send[h] rows.
  std::vector<std::vector<Row>> relayed(W);
  for (int i = 0; i < W; ++i) {
    const HierarchicalPlan& p = plans[i];
    std::vector<Row> packed;
    for (size_t b = 0; b < p.pack_rows.size(); ++b)
      for (int64_t r = 0; r < p.pack_rows[b]; ++r) packed.push_back(send[i][p.pack_offset[b] + r]);
    ASSERT_EQ(packed.size(), send[i].size());
    size_t at = 0;
    for (int h = 0; h < G; ++h) {
      const int dst = (i / G) * G + h;
      for (int64_t r = 0; r < p.stage1_send[h]; ++r) relayed[dst].push_back(packed[at++]);
    }
  }
  // Senders were visited in member order, so each inbox holds its local
  // peers' blocks in local-index order, as the node all-to-all delivers them.
  for (int i = 0; i < W; ++i) {
    int64_t expected = 0;
    for (int64_t n : plans[i].stage1_recv) expected += n;
    ASSERT_EQ(static_cast<int64_t>(relayed[i].size()), expected) << "member " << i;
    for (const Row& row : relayed[i]) ASSERT_EQ(row.to % G, i % G) << "stage 1 reached the rail";
  }
  // Stage 2 inside each rail: regroup (m, g), then (n, h) -> (m, h).
  std::vector<std::vector<std::vector<Row>>> inbox(W, std::vector<std::vector<Row>>(N));
  for (int i = 0; i < W; ++i) {
    const HierarchicalPlan& p = plans[i];
    std::vector<Row> regrouped;
    for (size_t b = 0; b < p.relay_rows.size(); ++b)
      for (int64_t r = 0; r < p.relay_rows[b]; ++r)
        regrouped.push_back(relayed[i][p.relay_offset[b] + r]);
    size_t at = 0;
    for (int m = 0; m < N; ++m) {
      const int dst = m * G + i % G;
      for (int64_t r = 0; r < p.stage2_send[m]; ++r) inbox[dst][i / G].push_back(regrouped[at++]);
    }
  }
  for (int i = 0; i < W; ++i) {
    std::vector<Row> got;
    for (int n = 0; n < N; ++n) {
      EXPECT_EQ(static_cast<int64_t>(inbox[i][n].size()), plans[i].stage2_recv[n]);
      got.insert(got.end(), inbox[i][n].begin(), inbox[i][n].end());
    }
    ASSERT_EQ(got.size(), flat[i].size()) << "member " << i;
    for (size_t r = 0; r < got.size(); ++r) {
      ASSERT_TRUE(got[r] == flat[i][r])
          << N << " nodes x " << G << ": member " << i << " row " << r << " came from "
          << got[r].from << " (block row " << got[r].k << "), expected " << flat[i][r].from
          << " (" << flat[i][r].k << ")";
    }
  }
}

TEST(HierarchicalPlan, TwoStagesEqualTheFlatAllToAll) {
  for (int N : {1, 2, 3, 4})
    for (int G : {1, 2, 3, 4})
      for (int seed : {0, 1, 5}) ExpectEqualsFlat(N, G, seed);
}

TEST(HierarchicalPlan, CountsOfTwoNodesByHand) {
  // 2 nodes x 2: member 1 = (node 0, local 1) sends 1, 2, 3, 4 rows to members 0..3.
  const std::vector<int64_t> send = {1, 2, 3, 4};
  // Local peers (0, 0) and (0, 1) send to (m, 1): peer g row [to (0,1), to (1,1)].
  const std::vector<int64_t> peer = {5, 6, 2, 4};
  const std::vector<int64_t> recv = {5, 2, 7, 8};
  const HierarchicalPlan p = MakeHierarchicalPlan(2, 2, send, peer, recv);
  EXPECT_EQ(p.stage1_send, (std::vector<int64_t>{1 + 3, 2 + 4}));  // to local 0: members 0, 2
  EXPECT_EQ(p.pack_offset, (std::vector<int64_t>{0, 3, 1, 6}));
  EXPECT_EQ(p.stage1_recv, (std::vector<int64_t>{11, 6}));
  EXPECT_EQ(p.stage2_send, (std::vector<int64_t>{5 + 2, 6 + 4}));
  EXPECT_EQ(p.relay_offset, (std::vector<int64_t>{0, 11, 5, 13}));
  EXPECT_EQ(p.stage2_recv, (std::vector<int64_t>{7, 15}));
}

}  // namespace
}  // namespace sb
