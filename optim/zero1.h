// ZeRO stage 1 (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward
// Training Trillion Parameter Models", P_os): the optimizer state of every
// parameter lives on ONE of the replicas that hold the parameter (its owner);
// the owner updates the parameter with the full, already summed gradient,
// then the owners' new values are all-gathered so that every replica holds
// identical parameters again. AdamW's 2x-parameter state shrinks by the
// number of replicas.
//
// Sharding unit: whole tensors, assigned to owners by a balanced greedy
// (largest tensor first, to the least loaded replica; LPT scheduling). Whole
// tensors keep every per-tensor statistic exact, including Adafactor's
// factored row/column moments and update RMS, so the result is bitwise that
// of the unsharded optimizer (tested). The price is a coarser balance than
// DeepSpeed's flat-buffer partitions when a few tensors dominate.
//
// Replica groups: replicated parameters are replicated over the whole world;
// an expert shard over its expert-data-parallel group (parallel/grad_sync.h).
// optim/ does not depend on parallel/: the caller passes each group's size,
// rank and an all-gather-v function (the trainer wraps its Communicator).
//
// Checkpoints: State() lists only the owned parameters' state (names as the
// inner optimizer's). A checkpoint of a ZeRO-1 run must therefore collect
// state from the owners (owner() says which replica holds what).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "optim/optimizer.h"

namespace sb {

// The replicas of a set of parameters, as seen by one member.
struct ReplicaGroup {
  int size = 1;
  int rank = 0;
  // Collective over the group: recv [sum(counts)] = the members' send
  // tensors ([counts[m]] elements, 1-D, the parameters' dtype) in member order.
  std::function<void(const Tensor& send, const Tensor& recv, const std::vector<int64_t>& counts)>
      all_gather_v;
};

// owner[i] in [0, num_replicas) for tensors of sizes[i] elements: largest
// first (ties: lower index) to the replica with the least total so far
// (ties: lower replica). Deterministic, so every replica computes the same.
std::vector<int> AssignOwners(const std::vector<int64_t>& sizes, int num_replicas);

class Zero1Optimizer : public Optimizer {
 public:
  // params: every parameter of this rank (expert ones are recognised by
  // Parameter::is_expert); replicated / expert: the groups over which each
  // kind is replicated. gather_bucket_bytes bounds the all-gather buffer.
  Zero1Optimizer(const switchboard::OptimizerConfig& config, std::vector<Parameter*> params,
                 ReplicaGroup replicated, ReplicaGroup expert, int64_t gather_bucket_bytes);

  // Owners update their parameters (the inner optimizer), then every
  // replica receives the owners' values. Collective over both groups.
  void Step(double lr) override;
  int64_t step() const override { return inner_->step(); }
  // The owned parameters' state only (see the header comment).
  std::vector<std::pair<std::string, Tensor>> State() override { return inner_->State(); }
  void set_step(int64_t step) override { inner_->set_step(step); }

  // Replica (rank in its group) that owns `param`'s state; -1 if unknown.
  int owner(const Parameter* param) const;
  // Elements of optimizer-updated parameters owned here / in total.
  int64_t owned_elements() const { return owned_elements_; }

 private:
  struct Group {
    ReplicaGroup replicas;
    std::vector<Parameter*> params;
    std::vector<int> owner;  // [params.size()]
  };
  void Gather(const Group& group);

  std::unique_ptr<Optimizer> inner_;
  Group groups_[2];  // replicated, expert
  std::unordered_map<const Parameter*, int> owner_of_;
  int64_t bucket_bytes_;
  int64_t owned_elements_ = 0;
  ScratchTensor send_, recv_;
};

}  // namespace sb
