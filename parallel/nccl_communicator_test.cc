// The NCCL communicator on one GPU, in one process (a world of one without
// MPI, as `switchboard train` runs bare): every collective on device
// tensors gives the one-rank result, the non-blocking forms too, host
// tensors go over the host twin, Split makes a working sub-communicator,
// and the token dispatcher's Dispatch / Combine through it equal the local
// path (LocalDispatcher) bit for bit. Skips, saying why, without a GPU.
// Several GPUs: tests/mpi/nccl_test.cc under mpirun.
#include <gtest/gtest.h>

#include <numeric>

#include "moe/core/device_memory.h"
#include "moe/ops/ops.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/backend.h"

namespace sb {
namespace {

// One runtime (a world of one) and one NCCL communicator for the binary.
Communicator* Nccl(std::string* why_not) {
  static std::unique_ptr<Runtime> runtime;
  static std::unique_ptr<Communicator> nccl;
  static std::string reason;
  if (!nccl && reason.empty()) {
    if (!NcclBuilt()) {
      reason = "built without CUDA";
    } else if (LaunchedByMpiLauncher()) {
      reason = "started by a launcher: the one-GPU test runs as a world of one";
    } else {
      auto rt = Runtime::Start();
      auto device = rt.ok() ? BindLocalDevice(**rt) : absl::StatusOr<int>(rt.status());
      if (!device.ok()) {
        reason = std::string(device.status().message());
      } else {
        runtime = std::move(*rt);
        auto world = CreateNcclWorld(*runtime, *device);
        if (world.ok()) {
          nccl = std::move(*world);
        } else {
          reason = std::string(world.status().message());
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
  if (var == nullptr) GTEST_SKIP() << "no NCCL GPU: " << why_not

Tensor ToDevice(const Tensor& host) {
  Tensor t = Tensor::Empty(host.shape(), host.dtype(), Device::kCuda);
  ops::Copy(host, t);
  return t;
}

// start, start + 1, ... as a host tensor of `dtype` (exact in every dtype here).
Tensor Iota(const Shape& shape, DType dtype, double start) {
  std::vector<double> v(static_cast<size_t>(NumElements(shape)));
  std::iota(v.begin(), v.end(), start);
  switch (dtype) {
    case DType::kF32: return Tensor::FromVector(std::vector<float>(v.begin(), v.end()), shape);
    case DType::kI32: return Tensor::FromVector(std::vector<int32_t>(v.begin(), v.end()), shape);
    case DType::kI64: return Tensor::FromVector(std::vector<int64_t>(v.begin(), v.end()), shape);
    default: return Tensor::FromVector(v, shape);
  }
}

TEST(NcclCommunicator, OneRankCollectivesOnDeviceTensors) {
  NCCL_OR_SKIP(c);
  ASSERT_EQ(c->size(), 1);
  for (DType dtype : {DType::kF32, DType::kF64, DType::kI32, DType::kI64}) {
    const Tensor host = Iota({5, 3}, dtype, 1);
    const std::vector<double> expected = host.ToDoubles();
    Tensor buf = ToDevice(host);
    c->AllReduceSum(buf);
    EXPECT_EQ(buf.ToDoubles(), expected) << DTypeName(dtype);
    c->Broadcast(buf, 0);
    EXPECT_EQ(buf.ToDoubles(), expected);
    Tensor out = Tensor::Zeros({5, 3}, dtype, Device::kCuda);
    c->AllToAllV(buf, {5}, out, {5});
    EXPECT_EQ(out.ToDoubles(), expected);
    Tensor gathered = Tensor::Zeros({5, 3}, dtype, Device::kCuda);
    c->AllGather(buf, gathered);
    EXPECT_EQ(gathered.ToDoubles(), expected);
    Tensor gathered_v = Tensor::Zeros({5, 3}, dtype, Device::kCuda);
    c->AllGatherV(buf, gathered_v, {5});
    EXPECT_EQ(gathered_v.ToDoubles(), expected);
    Tensor scattered = Tensor::Zeros({5, 3}, dtype, Device::kCuda);
    c->ReduceScatterSum(buf, scattered);
    EXPECT_EQ(scattered.ToDoubles(), expected);
  }
}

TEST(NcclCommunicator, AsyncFormsHostTensorsAndSplit) {
  NCCL_OR_SKIP(c);
  Tensor buf = ToDevice(Iota({7}, DType::kF32, -3));
  auto pending = c->AllReduceSumAsync(buf);
  pending->Wait();  // orders the compute stream after it; ToDoubles copies after that
  EXPECT_EQ(buf.ToDoubles(), Iota({7}, DType::kF32, -3).ToDoubles());
  Tensor out = Tensor::Zeros({7}, DType::kF32, Device::kCuda);
  c->AllToAllVAsync(buf, {7}, out, {7})->Wait();
  EXPECT_EQ(out.ToDoubles(), buf.ToDoubles());
  // Host tensors (counts, metrics) take the host twin.
  Tensor host = Iota({4}, DType::kI64, 2);
  c->AllReduceSum(host);
  EXPECT_EQ(host.ToDoubles(), (std::vector<double>{2, 3, 4, 5}));
  auto sub = c->Split(0, 0, "ep");
  ASSERT_EQ(sub->size(), 1);
  EXPECT_EQ(sub->name(), "ep");
  Tensor x = ToDevice(Iota({3, 2}, DType::kF64, 10));
  sub->AllReduceSum(x);
  EXPECT_EQ(x.ToDoubles(), Iota({3, 2}, DType::kF64, 10).ToDoubles());
  c->Barrier();
}

TEST(NcclCommunicator, DispatchAndCombineEqualTheLocalPath) {
  NCCL_OR_SKIP(c);
  const int E = 4, D = 6;
  const std::vector<int64_t> counts = {3, 0, 5, 2};
  const int64_t rows = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  const Tensor host = Iota({rows, D}, DType::kF32, 0.5);
  LocalDispatcher local;
  AllToAllDispatcher nccl(*c, E);
  const DispatchPlan local_plan = local.Plan(counts);
  const DispatchPlan plan = nccl.Plan(counts);
  EXPECT_EQ(plan.rows_per_local_expert, local_plan.rows_per_local_expert);
  Tensor local_out = Tensor::Zeros({rows, D});
  local.Dispatch(local_plan, host, local_out);
  Tensor src = ToDevice(host);
  Tensor dispatched = Tensor::Zeros({plan.total_recv, D}, DType::kF32, Device::kCuda);
  nccl.Dispatch(plan, src, dispatched);
  EXPECT_EQ(dispatched.ToDoubles(), local_out.ToDoubles());
  Tensor back = Tensor::Zeros({rows, D}, DType::kF32, Device::kCuda);
  nccl.Combine(plan, dispatched, back);
  EXPECT_EQ(back.ToDoubles(), host.ToDoubles());
}

}  // namespace
}  // namespace sb
