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
// order, the order backward finishes gradients. A tensor larger than a bucket
// is reduced in place without packing.
//
// Overlap (parallel.overlap_grad_sync, as DDP's reducer): the trainer calls
// BeginOverlap before the backward pass that completes the step's gradients
// and forwards Model's backward observer to GradientsReady. A bucket's
// non-blocking all-reduce (MPI_Iallreduce; NCCL on the communication stream
// after an event, so the host never waits) starts once all its tensors are
// ready AND every earlier bucket has started: every rank then starts the
// same sequence of collectives whatever the hook's granularity. Sync starts
// what is left and waits for all. Each bucket then needs its own flat buffer
// (one extra copy of the synchronised gradients; without overlap one
// buffer is reused).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
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
  // Overlap with backward (see above). GradientsReady ignores calls outside
  // BeginOverlap ... Sync (earlier micro-batches of an accumulating step).
  void BeginOverlap();
  void GradientsReady(const std::vector<Parameter*>& params);

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // The bucket that holds p, or -1 when p needs no sync (a group of one).
  int BucketOf(const Parameter* p) const;
  // Buckets started by GradientsReady (before Sync) in the last overlapped step.
  int started_early() const { return started_early_; }
  double seconds() const { return seconds_; }  // total time in Sync and starting buckets
  int64_t bytes() const { return bytes_; }     // total bytes all-reduced by this rank

 private:
  struct Bucket {
    Communicator* comm = nullptr;
    std::vector<Parameter*> params;
    int64_t numel = 0;
    DType dtype = DType::kF32;
    int not_ready = 0;  // tensors backward has not finished (overlap)
    ScratchTensor flat;  // this bucket's buffer (overlap)
    std::unique_ptr<PendingCollective> pending;
  };
  // Packs bucket b and all-reduces it: non-blocking into its own buffer
  // (overlap), or blocking through the shared one. Finish waits and unpacks.
  void Start(Bucket& b, bool overlap);
  void Finish(Bucket& b);
  Tensor Flat(Bucket& b, bool own_buffer);

  std::vector<Bucket> buckets_;
  std::vector<std::pair<const Parameter*, int>> bucket_of_;  // sorted by parameter
  ScratchTensor flat_;  // shared buffer without overlap
  bool overlapping_ = false;
  int next_start_ = 0;  // buckets [0, next_start_) are started
  int started_early_ = 0;
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
