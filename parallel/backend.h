// Which library moves tensors between ranks (parallel.backend), and the NCCL
// world when it is NCCL. The only place outside nccl_communicator.cc that
// knows whether NCCL was built (SB_CUDA).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "moe/core/dtype.h"
#include "parallel/communicator.h"
#include "parallel/runtime.h"

namespace sb {

enum class Backend { kAuto, kMpi, kNccl };

// kAuto: NCCL for a CUDA run, MPI for a CPU run; the others as asked.
Backend ResolveBackend(Backend requested, Device device);
const char* BackendName(Backend backend);
bool NcclBuilt();

// The GPU this rank drives: its local rank from the launcher (device_binding.h)
// against the devices it sees, made current with cudaSetDevice. Not
// collective: call Runtime::AllOk on the result before CreateNcclWorld, so
// that one rank without a GPU cannot leave the others in NCCL's bootstrap.
absl::StatusOr<int> BindLocalDevice(const Runtime& runtime);

// The NCCL world over the runtime's MPI world (host tensors keep going over
// MPI), with its failures watched by the runtime's watchdog. Collective.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclWorld(Runtime& runtime, int device);

}  // namespace sb
