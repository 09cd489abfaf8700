// Every Communicator collective over MPI, nccl-tests style: inputs are
// crafted from (rank, peer, index) so that every received element is known
// exactly (small integers, exact in f32), for f32, f64, i32 and i64, on the
// world and on split sub-groups, including zero-row blocks.
// Run by ctest through mpirun (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

#include "parallel/mpi_communicator.h"
#include "tests/testing/mpi_test_main.h"

namespace sb {
namespace {

Communicator& World() { return testing::TestRuntime().world(); }

template <typename T>
Tensor Make(const std::vector<double>& values, const Shape& shape) {
  std::vector<T> v(values.begin(), values.end());
  return Tensor::FromVector(v, shape);
}

template <typename T>
class CollectivesTest : public ::testing::Test {};
using Types = ::testing::Types<float, double, int32_t, int64_t>;
TYPED_TEST_SUITE(CollectivesTest, Types);

TYPED_TEST(CollectivesTest, AllReduceSum) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank();
  const int n = 37;
  std::vector<double> x(n);
  for (int i = 0; i < n; ++i) x[i] = r * 1000 + i;
  Tensor t = Make<TypeParam>(x, {n});
  c.AllReduceSum(t);
  const std::vector<double> got = t.ToDoubles();
  for (int i = 0; i < n; ++i) ASSERT_EQ(got[i], 1000.0 * W * (W - 1) / 2 + double(W) * i) << i;
}

// Member r sends Count(r, p) rows of 3 columns to member p; the row k of that
// block holds Code(r, p, k, col).
int Count(int from, int to) { return (from + 2 * to) % 3 + (from == to ? 1 : 0); }
double Code(int from, int to, int k, int col) { return ((from * 16 + to) * 8 + k) * 4 + col; }

TYPED_TEST(CollectivesTest, AllToAllV) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), D = 3;
  std::vector<int64_t> send_rows(W), recv_rows(W);
  std::vector<double> send;
  for (int p = 0; p < W; ++p) {
    send_rows[p] = Count(r, p);
    recv_rows[p] = Count(p, r);
    for (int k = 0; k < send_rows[p]; ++k)
      for (int col = 0; col < D; ++col) send.push_back(Code(r, p, k, col));
  }
  const int64_t total_send = std::accumulate(send_rows.begin(), send_rows.end(), int64_t{0});
  const int64_t total_recv = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  Tensor s = Make<TypeParam>(send, {total_send, D});
  Tensor out = Make<TypeParam>(std::vector<double>(total_recv * D, -1), {total_recv, D});
  c.AllToAllV(s, send_rows, out, recv_rows);
  const std::vector<double> got = out.ToDoubles();
  size_t i = 0;
  for (int p = 0; p < W; ++p)
    for (int k = 0; k < recv_rows[p]; ++k)
      for (int col = 0; col < D; ++col, ++i) ASSERT_EQ(got[i], Code(p, r, k, col)) << p << " " << k;
}

TYPED_TEST(CollectivesTest, AllGather) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank();
  Tensor s = Make<TypeParam>({r * 10.0, r * 10.0 + 1, r * 10.0 + 2, r * 10.0 + 3}, {2, 2});
  Tensor out = Make<TypeParam>(std::vector<double>(4 * W, -1), {2 * W, 2});
  c.AllGather(s, out);
  const std::vector<double> got = out.ToDoubles();
  for (int i = 0; i < 4 * W; ++i) ASSERT_EQ(got[i], (i / 4) * 10.0 + i % 4) << i;
}

TYPED_TEST(CollectivesTest, AllGatherVWithEmptyBlocks) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank();
  std::vector<int64_t> rows(W);
  for (int p = 0; p < W; ++p) rows[p] = p % 3;  // member 0 sends nothing
  std::vector<double> mine;
  for (int k = 0; k < rows[r]; ++k) mine.push_back(100.0 * r + k);
  const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t{0});
  Tensor s = Make<TypeParam>(mine, {rows[r]});
  Tensor out = Make<TypeParam>(std::vector<double>(total, -1), {total});
  c.AllGatherV(s, out, rows);
  const std::vector<double> got = out.ToDoubles();
  size_t i = 0;
  for (int p = 0; p < W; ++p)
    for (int k = 0; k < rows[p]; ++k, ++i) ASSERT_EQ(got[i], 100.0 * p + k);
}

TYPED_TEST(CollectivesTest, ReduceScatterSum) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), n = 3, D = 2;
  std::vector<double> x(W * n * D);
  for (size_t i = 0; i < x.size(); ++i) x[i] = r * 1000.0 + i;
  Tensor s = Make<TypeParam>(x, {W * n, D});
  Tensor out = Make<TypeParam>(std::vector<double>(n * D, -1), {n, D});
  c.ReduceScatterSum(s, out);
  const std::vector<double> got = out.ToDoubles();
  for (int j = 0; j < n * D; ++j)
    ASSERT_EQ(got[j], 1000.0 * W * (W - 1) / 2 + double(W) * (r * n * D + j)) << j;
}

TYPED_TEST(CollectivesTest, BroadcastFromLastRank) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), root = W - 1;
  std::vector<double> x(5);
  for (int i = 0; i < 5; ++i) x[i] = r == root ? 7.0 * root + i : -1;
  Tensor t = Make<TypeParam>(x, {5});
  c.Broadcast(t, root);
  const std::vector<double> got = t.ToDoubles();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(got[i], 7.0 * root + i);
  c.Barrier();
}

TEST(Collectives, SplitIntoEvenAndOddRanks) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank();
  // Reverse key order inside each group: the new rank follows the key.
  auto sub = c.Split(r % 2, -r, "parity");
  int members = 0, expected_rank = 0;
  double sum = 0;
  for (int p = 0; p < W; ++p) {
    if (p % 2 != r % 2) continue;
    ++members;
    sum += p;
    if (p > r) ++expected_rank;
  }
  EXPECT_EQ(sub->size(), members);
  EXPECT_EQ(sub->rank(), expected_rank);
  EXPECT_EQ(sub->name(), "parity");
  EXPECT_EQ(AllReduceSum(*sub, {double(r)})[0], sum);
}

TEST(Collectives, LargeRowsUseOneRowDatatype) {
  // Rows of 4096 f32 (one MPI datatype per row); 2 rows to every peer.
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), D = 4096;
  std::vector<float> send(static_cast<size_t>(2 * W) * D);
  for (size_t i = 0; i < send.size(); ++i) send[i] = float(r * 1'000'000 + i % 1'000'000);
  Tensor s = Tensor::FromVector(send, {2 * W, D});
  Tensor out = Tensor::Zeros({2 * W, D});
  const std::vector<int64_t> two(W, 2);
  c.AllToAllV(s, two, out, two);
  const float* got = out.data<float>();
  for (int p = 0; p < W; ++p) {
    for (int64_t j = 0; j < 2 * D; ++j) {
      // Block p of out came from member p's block r.
      const size_t src_index = static_cast<size_t>(r) * 2 * D + j;
      ASSERT_EQ(got[p * 2 * D + j], float(p * 1'000'000 + src_index % 1'000'000));
    }
  }
}

}  // namespace
}  // namespace sb
