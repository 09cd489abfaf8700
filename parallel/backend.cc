// Backend selection and the NCCL world (backend.h).
#include "parallel/backend.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "moe/core/device_memory.h"
#include "parallel/device_binding.h"

#if SB_CUDA
#include <cuda_runtime_api.h>

#include "parallel/nccl_communicator.h"
#endif

namespace sb {

Backend ResolveBackend(Backend requested, Device device) {
  if (requested != Backend::kAuto) return requested;
  return device == Device::kCuda ? Backend::kNccl : Backend::kMpi;
}

const char* BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "AUTO";
    case Backend::kMpi: return "MPI";
    case Backend::kNccl: return "NCCL";
  }
  return "?";
}

bool NcclBuilt() { return SB_CUDA != 0; }

absl::StatusOr<int> BindLocalDevice(const Runtime& runtime) {
  const ProcessInfo& info = runtime.info();
  LocalRank local = LocalRankFromEnvironment(
      [](const char* name) { return std::getenv(name); }, info.local_rank, info.local_size);
  if (!info.mpi && local.source == kSplitSource) local.source = "a world of one (no launcher)";
  absl::StatusOr<int> device = DeviceForLocalRank(local, CudaDeviceCount(), info.host,
                                                  std::getenv("CUDA_VISIBLE_DEVICES"));
  if (!device.ok()) return device.status();
#if SB_CUDA
  if (const cudaError_t r = cudaSetDevice(*device); r != cudaSuccess) {
    return absl::FailedPreconditionError(absl::StrCat("cudaSetDevice(", *device, ") on ", info.host,
                                                      ": ", cudaGetErrorString(r)));
  }
#endif
  return device;
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclWorld(Runtime& runtime, int device) {
#if SB_CUDA
  auto world = NcclCommunicator::Create(runtime.world(), device, runtime.watchdog());
  if (!world.ok()) return world.status();
  return std::unique_ptr<Communicator>(std::move(*world));
#else
  (void)runtime;
  (void)device;
  return absl::FailedPreconditionError(
      "parallel.backend = NCCL but this binary was built without CUDA (SB_CUDA=OFF)");
#endif
}

}  // namespace sb
