// Which GPU a rank drives: one rank per GPU, chosen by the rank's index on
// its node (DESIGN.md "Parallelism": each rank binds the GPU of its local
// rank). Host code only, so that the rules are tested without GPUs.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace sb {

struct LocalRank {
  int rank = 0;        // index among the ranks on this node
  int size = 1;        // ranks on this node
  std::string source;  // where it came from (for messages)
};

// The launcher's local rank: OMPI_COMM_WORLD_LOCAL_RANK / _LOCAL_SIZE
// (OpenMPI's mpirun; checked first because an mpirun inside a Slurm
// allocation inherits the Slurm variables of its daemon), SLURM_LOCALID
// (srun), MPI_LOCALRANKID / MPI_LOCALNRANKS (MPICH, Intel MPI). Without them
// (or for a missing size) the MPI shared-memory split's values. getenv is a
// parameter so that tests can feed an environment.
inline constexpr char kSplitSource[] = "MPI shared-memory split";
LocalRank LocalRankFromEnvironment(const std::function<const char*(const char*)>& getenv,
                                   int split_rank, int split_size);

// The CUDA device index for `local`, given how many devices this process
// sees. Every rank seeing all of the node's GPUs binds GPU `local.rank`; a
// rank that sees exactly one (CUDA_VISIBLE_DEVICES set per rank, srun
// --gpus-per-task=1) binds device 0. Errors (no GPU, fewer GPUs than ranks,
// several ranks sharing one GPU) name the host, the counts and
// CUDA_VISIBLE_DEVICES.
absl::StatusOr<int> DeviceForLocalRank(const LocalRank& local, int visible_devices,
                                       const std::string& host,
                                       const char* cuda_visible_devices);

}  // namespace sb
