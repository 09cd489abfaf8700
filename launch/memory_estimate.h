// How much memory a training run needs per rank, estimated from the config
// alone, before anything is allocated (docs/cli.md, "Memory"): a config
// whose sizes pass the per-field limits but cannot fit (d_model = 1048576)
// is refused with the estimate and what is available, instead of ending in
// an out-of-memory abort or the OOM killer.
//
// The estimate mirrors what the code allocates: parameters and their
// gradients (this rank's replicated tensors and local experts), optimizer
// state (AdamW: 2 per weight; Adafactor: factored second moments, plus
// momentum when adafactor_beta1 > 0; ZeRO-1 shards it), the activations
// every layer keeps between Forward and Backward (they persist across steps
// as scratch buffers), and communication buffers. Placement and precision
// are inputs so that a device backend changes only them: on a GPU the same
// terms move to device memory (bf16 activations are a later refinement).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "configs/config.h"
#include "moe/core/dtype.h"

namespace sb {

struct MemoryPlacement {
  Device device = Device::kCpu;           // where weights, state and activations live
  DType param_dtype = DType::kF32;        // weights, gradients and optimizer state
  DType activation_dtype = DType::kF32;   // activations and their gradients
};

// Bytes per rank (doubles: absurd configs must not overflow).
struct MemoryEstimate {
  double parameters = 0, gradients = 0, optimizer_state = 0, activations = 0, buffers = 0;
  Device device = Device::kCpu;
  double total() const { return parameters + gradients + optimizer_state + activations + buffers; }
  // Host bytes per rank: everything on the CPU; on a GPU only the
  // micro-batch staging (the rest is device_bytes).
  double host_bytes() const;
  double device_bytes() const;
  // "1.2 GiB per rank on cpu: parameters 120 MiB, gradients 120 MiB, ..."
  std::string Describe() const;
};

// The estimate for `config` (validated) on a world of `world_size` ranks.
MemoryEstimate EstimateTrainingMemory(const TrainConfig& config, int world_size,
                                      const MemoryPlacement& placement = {});

// Memory this process may still use on the host: MemAvailable from
// /proc/meminfo, lowered to the cgroup's limit minus its usage when a cgroup
// (v2 memory.max or v1 limit_in_bytes) limits the process. `source` says
// which. Error when /proc/meminfo cannot be read.
absl::StatusOr<double> HostMemoryAvailable(std::string* source);

// OK when `ranks_on_host` ranks of `estimate` fit into `available` host
// bytes; ResourceExhausted with the estimate's breakdown and the available
// memory otherwise.
absl::Status CheckHostMemory(const MemoryEstimate& estimate, int ranks_on_host, double available,
                             const std::string& source);
// The same for one rank's device bytes against the GPU's free memory
// (cudaMemGetInfo; one rank per GPU).
absl::Status CheckDeviceMemory(const MemoryEstimate& estimate, double available);

// "1.5 GiB", "320 MiB", "12 KiB", "900 B"
std::string FormatBytes(double bytes);

}  // namespace sb
