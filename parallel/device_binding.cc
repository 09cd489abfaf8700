// One rank per GPU (device_binding.h).
#include "parallel/device_binding.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sb {
namespace {

bool ReadInt(const std::function<const char*(const char*)>& getenv, const char* name, int* out) {
  const char* value = getenv(name);
  return value != nullptr && absl::SimpleAtoi(value, out) && *out >= 0;
}

}  // namespace

LocalRank LocalRankFromEnvironment(const std::function<const char*(const char*)>& getenv,
                                   int split_rank, int split_size) {
  struct Source {
    const char* rank;
    const char* size;  // null: the launcher has no plain count
  };
  for (const Source& s : {Source{"OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
                          Source{"SLURM_LOCALID", nullptr},
                          Source{"MPI_LOCALRANKID", "MPI_LOCALNRANKS"}}) {
    LocalRank local;
    if (!ReadInt(getenv, s.rank, &local.rank)) continue;
    if (s.size == nullptr || !ReadInt(getenv, s.size, &local.size) || local.size < 1) {
      local.size = split_size;
    }
    local.source = s.rank;
    return local;
  }
  return LocalRank{split_rank, split_size, kSplitSource};
}

absl::StatusOr<int> DeviceForLocalRank(const LocalRank& local, int visible_devices,
                                       const std::string& host,
                                       const char* cuda_visible_devices) {
  const std::string where = absl::StrCat(
      "local rank ", local.rank, " of ", local.size, " on host ", host, " (from ", local.source,
      "; CUDA_VISIBLE_DEVICES=", cuda_visible_devices ? cuda_visible_devices : "<unset>", ")");
  if (local.rank < 0 || local.rank >= local.size) {
    return absl::InvalidArgumentError(absl::StrCat("inconsistent ", where));
  }
  if (visible_devices <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device visible to ", where,
                     ": check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"));
  }
  if (visible_devices == 1) {
    // Each rank sees one device: fine when the launcher gave every rank its
    // own; several ranks on a node with one unrestricted GPU would share it.
    if (local.size > 1 && cuda_visible_devices == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(local.size, " ranks share the only GPU of host ", host, " (", where,
                       "): start one rank per GPU (launch/mpirun_gpu.sh)"));
    }
    return 0;
  }
  if (visible_devices < local.size) {
    return absl::FailedPreconditionError(
        absl::StrCat(local.size, " ranks on host ", host, " but only ", visible_devices,
                     " GPUs visible (", where, "): start one rank per GPU (launch/mpirun_gpu.sh)"));
  }
  return local.rank;
}

}  // namespace sb
