// The NCCL communicator across GPUs, under mpirun with one rank per GPU:
// every collective on device tensors gives exactly what the MPI
// communicator gives on the same host data (crafted values, zero-row
// blocks; f32, f64, i32, i64), sub-groups from ncclCommSplit (the process
// grid) work, the hierarchical all-to-all over NCCL equals the flat one, the
// token dispatcher over NCCL equals the dispatcher over MPI, and the
// non-blocking all-reduce equals the blocking one. Skips on every rank,
// saying why, unless every rank can bind its own GPU (CI has none). The
// bootstrap is the one `switchboard train` uses (parallel/backend.h).
#include <gtest/gtest.h>

#include <numeric>

#include "moe/ops/ops.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/backend.h"
#include "parallel/hierarchical_all_to_all.h"
#include "parallel/process_grid.h"
#include "tests/testing/crafted_rows.h"
#include "tests/testing/mpi_test_main.h"

namespace sb {
namespace {

Runtime& Rt() { return testing::TestRuntime(); }

// The NCCL world, made once (collective) and destroyed after the last test,
// before main ends MPI and the watchdog its probes are registered with.
std::unique_ptr<Communicator> g_nccl;
class NcclTeardown : public ::testing::Environment {
 public:
  void TearDown() override { g_nccl.reset(); }
};
const auto* const kTeardown = ::testing::AddGlobalTestEnvironment(new NcclTeardown);

// The NCCL world, or why not.
Communicator* Nccl(std::string* why_not) {
  std::unique_ptr<Communicator>& nccl = g_nccl;
  static std::string reason;
  static bool tried = false;
  if (!tried) {
    tried = true;
    if (!NcclBuilt()) {
      reason = "built without CUDA";
    } else {
      absl::StatusOr<int> device = BindLocalDevice(Rt());
      if (!Rt().AllOk(device.ok())) {
        reason = "every rank needs its own GPU: " +
                 (device.ok() ? std::string("another rank has none")
                              : std::string(device.status().message()));
      } else {
        auto world = CreateNcclWorld(Rt(), *device);
        if (Rt().AllOk(world.ok())) {
          nccl = std::move(*world);
        } else {
          reason = world.ok() ? "NCCL failed on another rank" : std::string(world.status().message());
        }
      }
    }
  }
  *why_not = reason;
  return nccl.get();
}

#define NCCL_OR_SKIP(var)                                      \
  std::string why_not;                                         \
  Communicator* var = Nccl(&why_not);                          \
  if (var == nullptr) GTEST_SKIP() << "no NCCL world: " << why_not

Tensor ToDevice(const Tensor& host) {
  Tensor t = Tensor::Empty(host.shape(), host.dtype(), Device::kCuda);
  ops::Copy(host, t);
  return t;
}

int64_t Count(int from, int to) { return (from * 5 + to * 3) % 4; }

template <typename T>
Tensor Make(const std::vector<double>& values, const Shape& shape) {
  return Tensor::FromVector(std::vector<T>(values.begin(), values.end()), shape);
}

template <typename T>
class NcclCollectives : public ::testing::Test {};
using Types = ::testing::Types<float, double, int32_t, int64_t>;
TYPED_TEST_SUITE(NcclCollectives, Types);

TYPED_TEST(NcclCollectives, EqualTheMpiCommunicator) {
  NCCL_OR_SKIP(nccl);
  Communicator& mpi = Rt().world();
  const int W = mpi.size(), r = mpi.rank(), D = 3;
  // All-to-all-v.
  const testing::CraftedExchange a2a = testing::CraftAllToAll(W, r, D, Count);
  const std::vector<int64_t>&send_rows = a2a.send_rows, &recv_rows = a2a.recv_rows;
  const int64_t n_send = a2a.total_send, n_recv = a2a.total_recv;
  const Tensor send = Make<TypeParam>(a2a.values, {n_send, D});
  Tensor expected = Tensor::Zeros({n_recv, D}, send.dtype());
  mpi.AllToAllV(send, send_rows, expected, recv_rows);
  // Device inputs are named: NCCL reads them after the call returns.
  const Tensor device_send = ToDevice(send);
  Tensor got = Tensor::Zeros({n_recv, D}, send.dtype(), Device::kCuda);
  nccl->AllToAllV(device_send, send_rows, got, recv_rows);
  EXPECT_EQ(got.ToDoubles(), expected.ToDoubles()) << "AllToAllV";
  // All-reduce (in place), all-gather, all-gather-v, reduce-scatter, broadcast.
  std::vector<double> x(4 * W);
  std::iota(x.begin(), x.end(), 100.0 * r);
  const Tensor host = Make<TypeParam>(x, {W, 4});
  Tensor sum = Make<TypeParam>(x, {W, 4});
  mpi.AllReduceSum(sum);
  Tensor device_sum = ToDevice(host);
  nccl->AllReduceSum(device_sum);
  EXPECT_EQ(device_sum.ToDoubles(), sum.ToDoubles()) << "AllReduceSum";
  Tensor gathered = Tensor::Zeros({W * W, 4}, host.dtype());
  mpi.AllGather(host, gathered);
  const Tensor device_host = ToDevice(host);
  Tensor device_gathered = Tensor::Zeros({W * W, 4}, host.dtype(), Device::kCuda);
  nccl->AllGather(device_host, device_gathered);
  EXPECT_EQ(device_gathered.ToDoubles(), gathered.ToDoubles()) << "AllGather";
  std::vector<int64_t> rows(W);
  for (int p = 0; p < W; ++p) rows[p] = p % 3;  // includes a zero
  const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t{0});
  const Tensor mine = Make<TypeParam>(std::vector<double>(rows[r] * 4, r + 1.0), {rows[r], 4});
  Tensor gathered_v = Tensor::Zeros({total, 4}, host.dtype());
  mpi.AllGatherV(mine, gathered_v, rows);
  const Tensor device_mine = ToDevice(mine);
  Tensor device_gathered_v = Tensor::Zeros({total, 4}, host.dtype(), Device::kCuda);
  nccl->AllGatherV(device_mine, device_gathered_v, rows);
  EXPECT_EQ(device_gathered_v.ToDoubles(), gathered_v.ToDoubles()) << "AllGatherV";
  Tensor scattered = Tensor::Zeros({1, 4}, host.dtype());
  mpi.ReduceScatterSum(host, scattered);
  Tensor device_scattered = Tensor::Zeros({1, 4}, host.dtype(), Device::kCuda);
  nccl->ReduceScatterSum(device_host, device_scattered);
  EXPECT_EQ(device_scattered.ToDoubles(), scattered.ToDoubles()) << "ReduceScatterSum";
  Tensor bcast = ToDevice(host);
  nccl->Broadcast(bcast, W - 1);
  Tensor mpi_bcast = Make<TypeParam>(x, {W, 4});
  mpi.Broadcast(mpi_bcast, W - 1);
  EXPECT_EQ(bcast.ToDoubles(), mpi_bcast.ToDoubles()) << "Broadcast";
}

TEST(NcclGrid, SplitHierarchicalAndDispatcherEqualMpi) {
  NCCL_OR_SKIP(nccl);
  Communicator& mpi = Rt().world();
  const int W = mpi.size(), r = mpi.rank(), D = 4, L = 2, E = L * W;
  auto nccl_grid = ProcessGrid::Create(*nccl, W, W % 2 == 0 && W > 2 ? 2 : 0);
  auto mpi_grid = ProcessGrid::Create(mpi, W);
  ASSERT_TRUE(nccl_grid.ok() && mpi_grid.ok());
  const testing::CraftedExchange x =
      testing::CraftPerExpert(E, r, D, [](int rank, int e) { return (rank + 2 * e) % 3; });
  const std::vector<int64_t>& counts = x.send_rows;
  const std::vector<double>& values = x.values;
  AllToAllDispatcher over_mpi((*mpi_grid)->dispatch_group(), E);
  AllToAllDispatcher over_nccl((*nccl_grid)->dispatch_group(), E);
  const DispatchPlan plan = over_mpi.Plan(counts);
  const DispatchPlan nccl_plan = over_nccl.Plan(counts);
  ASSERT_EQ(nccl_plan.recv_rows, plan.recv_rows);
  const Tensor src = Tensor::FromVector(std::vector<float>(values.begin(), values.end()),
                                        {plan.total_send, D});
  Tensor expected = Tensor::Zeros({plan.total_recv, D});
  over_mpi.Dispatch(plan, src, expected);
  const Tensor device_src = ToDevice(src);
  Tensor got = Tensor::Zeros({plan.total_recv, D}, DType::kF32, Device::kCuda);
  over_nccl.Dispatch(nccl_plan, device_src, got);
  EXPECT_EQ(got.ToDoubles(), expected.ToDoubles())
      << "dispatch over " << (*nccl_grid)->nodes_per_ep_group() << " node(s)";
  Tensor back = Tensor::Zeros({plan.total_send, D}, DType::kF32, Device::kCuda);
  over_nccl.Combine(nccl_plan, got, back);
  EXPECT_EQ(back.ToDoubles(), src.ToDoubles()) << "combine returns every row";
  // The EDP group (ncclCommSplit): a group of one here (ep = world).
  Tensor one = ToDevice(Tensor::FromVector(std::vector<float>{1, 2}, {2}));
  (*nccl_grid)->edp_group().AllReduceSum(one);
  EXPECT_EQ(one.ToDoubles(), (std::vector<double>{1, 2}));
}

TEST(NcclAsync, AllReduceOnTheCommunicationStreamEqualsBlocking) {
  NCCL_OR_SKIP(nccl);
  const int r = Rt().rank();
  std::vector<float> x(1000);
  std::iota(x.begin(), x.end(), float(r));
  const Tensor host = Tensor::FromVector(x, {1000});
  Tensor blocking = ToDevice(host), async = ToDevice(host);
  nccl->AllReduceSum(blocking);
  auto pending = nccl->AllReduceSumAsync(async);
  pending->Wait();
  EXPECT_EQ(async.ToDoubles(), blocking.ToDoubles());
}

}  // namespace
}  // namespace sb
