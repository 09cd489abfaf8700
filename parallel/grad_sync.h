// Gradient synchronisation for data x expert parallelism (DESIGN.md,
// "Parallelism"). Every rank's backward already scales its loss by
// 1 / (world * grad_accum), so the gradient of the global mean loss is a SUM:
//   replicated parameters (embedding, attention, norms, router, dense FFN,
//   LM head): all-reduce-sum over the whole world;
//   expert parameters: all-reduce-sum over the expert-data-parallel group
//   (the world/ep ranks that hold the same shard).
// After Sync every replica of a parameter holds the same gradient.
//
// Buckets: gradients are packed into flat buffers of about bucket_bytes and
// each buffer is one all-reduce (few large messages instead of one per
// tensor; DDP / Megatron use 25 MB). Buckets are filled in REVERSE parameter
// order, which is the order backward finishes gradients, so overlap can come
// later without changing the layout: a per-parameter "grad ready" hook from
// the layers' Backward would launch a bucket's non-blocking all-reduce
// (MPI_Iallreduce, or NCCL on a side stream) once its last parameter is
// ready, and Sync would then only wait. A tensor larger than a bucket is
// reduced in place without packing.
#pragma once

#include <cstdint>
#include <vector>

#include "moe/core/parameter.h"
#include "parallel/process_grid.h"

namespace sb {

// Parameters by how they are replicated.
struct ParamSplit {
  std::vector<Parameter*> replicated;  // one copy per rank
  std::vector<Parameter*> expert;      // sharded over the EP group (Parameter::is_expert)
};
ParamSplit SplitByReplication(const std::vector<Parameter*>& params);

class GradSync {
 public:
  // params: every parameter of this rank's model (same list, shapes and
  // order on every rank); grid must outlive this object.
  GradSync(const std::vector<Parameter*>& params, ProcessGrid& grid, int64_t bucket_bytes);
  // Sums every gradient over its replicas. Collective over the world and
  // the EDP group (all ranks call it once per step).
  void Sync();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  double seconds() const { return seconds_; }  // total time in Sync
  int64_t bytes() const { return bytes_; }     // total bytes all-reduced by this rank

 private:
  struct Bucket {
    Communicator* comm;
    std::vector<Parameter*> params;
    int64_t numel = 0;
    DType dtype = DType::kF32;
  };
  void Reduce(const Bucket& bucket);

  std::vector<Bucket> buckets_;
  ScratchTensor flat_;
  double seconds_ = 0;
  int64_t bytes_ = 0;
};

// The global squared gradient norm for clipping (docs/optim.md): replicated
// parameters counted once, expert shards summed over the EP group. Inputs
// are this rank's local sums after Sync (optim's GradSquaredNorm of each
// ParamSplit list). The EP sum is an all-gather added in EP-rank order, so
// the result is bitwise identical on every rank (so is the clip scale).
double GlobalGradSquaredNorm(double replicated_sq, double expert_sq, Communicator& ep_group);

}  // namespace sb
