// The hierarchical all-to-all over MPI, ranks of one machine grouped into
// pretend "nodes" of G consecutive ranks (what parallel.ranks_per_node
// does): for every G that divides the world, AllToAllV gives exactly the
// flat result (crafted values, zero-row blocks, self-sends; f32, f64, i32,
// i64; 2-D rows and 1-D), the token dispatcher over it lays rows out
// exactly as over the flat group, and the non-blocking forms of the MPI
// communicator equal their blocking twins. Run by ctest through mpirun (np
// 4: 2 x 2 and 1 x 4, 4 x 1; np 6: 3 x 2 and 2 x 3).
#include <gtest/gtest.h>

#include <cstdint>

#include "parallel/all_to_all_dispatcher.h"
#include "parallel/hierarchical_all_to_all.h"
#include "tests/testing/crafted_rows.h"
#include "tests/testing/mpi_test_main.h"

namespace sb {
namespace {

Communicator& World() { return testing::TestRuntime().world(); }

using testing::CraftAllToAll;
using testing::CraftedCode;
using testing::CraftPerExpert;

// Rows member `from` sends to member `to`; includes zeros and self-sends.
int64_t Count(int from, int to) { return (from * 5 + to * 3) % 4; }

std::vector<int> Divisors(int n) {
  std::vector<int> d;
  for (int g = 1; g <= n; ++g)
    if (n % g == 0) d.push_back(g);
  return d;
}

template <typename T>
class HierarchicalTest : public ::testing::Test {};
using Types = ::testing::Types<float, double, int32_t, int64_t>;
TYPED_TEST_SUITE(HierarchicalTest, Types);

TYPED_TEST(HierarchicalTest, AllToAllVEqualsFlat) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank();
  for (int D : {3, 0}) {  // D = 0: a 1-D tensor (rows of one element)
    const int cols = D == 0 ? 1 : D;
    const testing::CraftedExchange x = CraftAllToAll(W, r, cols, Count);
    const std::vector<int64_t>&send_rows = x.send_rows, &recv_rows = x.recv_rows;
    const int64_t n_send = x.total_send, n_recv = x.total_recv;
    auto shape = [&](int64_t rows) { return D == 0 ? Shape{rows} : Shape{rows, D}; };
    Tensor send = Tensor::FromVector(std::vector<TypeParam>(x.values.begin(), x.values.end()),
                                     shape(n_send));
    Tensor flat = Tensor::Zeros(shape(n_recv), send.dtype());
    c.AllToAllV(send, send_rows, flat, recv_rows);
    // The flat result itself, element by element.
    const std::vector<double> expected = flat.ToDoubles();
    size_t i = 0;
    for (int s = 0; s < W; ++s)
      for (int64_t k = 0; k < Count(s, r); ++k)
        for (int col = 0; col < cols; ++col, ++i) ASSERT_EQ(expected[i], CraftedCode(s, r, k, col));
    for (int G : Divisors(W)) {
      auto h = HierarchicalCommunicator::Create(c, G);
      ASSERT_TRUE(h.ok()) << h.status();
      EXPECT_EQ((*h)->nodes(), W / G);
      Tensor got = Tensor::Zeros(shape(n_recv), send.dtype());
      (*h)->AllToAllV(send, send_rows, got, recv_rows);
      ASSERT_EQ(got.ToDoubles(), expected) << W / G << " nodes x " << G << ", D " << D;
      // Twice through the same buffers (scratch reuse).
      Tensor again = Tensor::Zeros(shape(n_recv), send.dtype());
      (*h)->AllToAllV(send, send_rows, again, recv_rows);
      ASSERT_EQ(again.ToDoubles(), expected);
    }
  }
}

TEST(HierarchicalAllToAll, RejectsGroupsThatDoNotSpanWholeNodes) {
  Communicator& c = World();
  if (c.size() < 3) GTEST_SKIP() << "needs a world that some G does not divide";
  const int G = c.size() % 2 == 0 ? c.size() - 1 : 2;
  auto h = HierarchicalCommunicator::Create(c, G);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("ranks per node do not divide"), std::string::npos)
      << h.status();
}

TEST(HierarchicalAllToAll, DispatcherLayoutEqualsFlat) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), D = 4;
  for (int L : {1, 3}) {
    const int E = L * W;
    const testing::CraftedExchange x =
        CraftPerExpert(E, r, D, [](int rank, int e) { return (rank + 2 * e) % 3; });
    const std::vector<int64_t>& counts = x.send_rows;
    const std::vector<double>& values = x.values;
    AllToAllDispatcher flat(c, E);
    const DispatchPlan plan = flat.Plan(counts);
    Tensor src = Tensor::FromVector(values, {plan.total_send, D});
    Tensor expected = Tensor::Zeros({plan.total_recv, D}, DType::kF64);
    flat.Dispatch(plan, src, expected);
    for (int G : Divisors(W)) {
      auto h = HierarchicalCommunicator::Create(c, G);
      ASSERT_TRUE(h.ok()) << h.status();
      AllToAllDispatcher hierarchical(**h, E);
      const DispatchPlan hplan = hierarchical.Plan(counts);
      EXPECT_EQ(hplan.recv_rows, plan.recv_rows);
      Tensor got = Tensor::Zeros({plan.total_recv, D}, DType::kF64);
      hierarchical.Dispatch(hplan, src, got);
      ASSERT_EQ(got.ToDoubles(), expected.ToDoubles()) << "L " << L << ", G " << G;
      Tensor back = Tensor::Zeros({plan.total_send, D}, DType::kF64);
      hierarchical.Combine(hplan, got, back);
      ASSERT_EQ(back.ToDoubles(), values) << "combine is the inverse, L " << L << ", G " << G;
    }
  }
}

TEST(NonBlocking, AsyncFormsEqualBlocking) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank();
  // All-reduce: two in flight at once, waited in reverse order.
  Tensor a = Tensor::FromVector(std::vector<double>{1.0 * r, 2.0, 3.0 + r}, {3});
  Tensor b = Tensor::FromVector(std::vector<int64_t>{r, 10}, {2});
  auto pa = c.AllReduceSumAsync(a);
  auto pb = c.AllReduceSumAsync(b);
  while (!pb->Poll()) {
  }
  pb->Wait();
  pa->Wait();
  const double ranks = W * (W - 1) / 2.0;
  EXPECT_EQ(a.ToDoubles(), (std::vector<double>{ranks, 2.0 * W, 3.0 * W + ranks}));
  EXPECT_EQ(b.ToDoubles(), (std::vector<double>{ranks, 10.0 * W}));
  // All-to-all-v against the blocking one.
  const testing::CraftedExchange x = CraftAllToAll(W, r, 2, Count);
  const std::vector<int64_t>&send_rows = x.send_rows, &recv_rows = x.recv_rows;
  const int64_t n_send = x.total_send, n_recv = x.total_recv;
  Tensor send = Tensor::FromVector(std::vector<float>(x.values.begin(), x.values.end()), {n_send, 2});
  Tensor blocking = Tensor::Zeros({n_recv, 2}), async = Tensor::Zeros({n_recv, 2});
  c.AllToAllV(send, send_rows, blocking, recv_rows);
  {
    auto pending = c.AllToAllVAsync(send, send_rows, async, recv_rows);
    // Destroying the handle waits.
  }
  EXPECT_EQ(async.ToDoubles(), blocking.ToDoubles());
}

}  // namespace
}  // namespace sb
