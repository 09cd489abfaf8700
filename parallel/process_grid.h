// The data x expert process grid (DESIGN.md, "Parallelism"):
//   world = dp x ep;  every rank reads its own micro-batches (data
//   parallelism spans the whole world); experts are sharded over
//   expert-parallel (EP) groups of `ep` CONSECUTIVE ranks, so the
//   all-to-all stays inside a node when ep <= ranks per node.
//   EP group g = ranks [g*ep, (g+1)*ep); EP rank r holds global experts
//   [r*E/ep, (r+1)*E/ep). The ranks with the same EP rank hold the same
//   expert shard: they form its expert-data-parallel (EDP) group of dp =
//   world/ep replicas, over which expert gradients are summed.
// Example world 8, ep 4: EP groups {0,1,2,3} {4,5,6,7}; EDP groups {0,4}
// {1,5} {2,6} {3,7}.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace sb {

// The layout arithmetic alone (no communicators): unit-testable.
struct GridLayout {
  int world_size = 1;
  int ep_size = 1;

  int dp_size() const { return world_size / ep_size; }
  int ep_rank(int rank) const { return rank % ep_size; }
  int dp_rank(int rank) const { return rank / ep_size; }  // index of rank's EP group
  std::vector<int> EpGroupRanks(int rank) const;
  std::vector<int> ExpertDataParallelRanks(int rank) const;
  // Global experts [first, first + num_experts / ep) of `rank`.
  int FirstExpert(int rank, int num_experts) const { return ep_rank(rank) * (num_experts / ep_size); }
};

class ProcessGrid {
 public:
  // Splits `world` (the job's communicator or a sub-group of it; must
  // outlive the grid) into EP and EDP groups. InvalidArgument when ep does
  // not divide the world size. Collective over world.
  // hierarchical_ranks_per_node > 0 (parallel.all_to_all = HIERARCHICAL):
  // when an EP group spans several nodes of that many ranks, the token
  // dispatcher's all-to-all runs in two stages (hierarchical_all_to_all.h);
  // it must divide ep then. 0, or EP groups inside one node: flat.
  static absl::StatusOr<std::unique_ptr<ProcessGrid>> Create(Communicator& world, int ep_size,
                                                             int hierarchical_ranks_per_node = 0);

  const GridLayout& layout() const { return layout_; }
  int rank() const { return world_.rank(); }
  int world_size() const { return layout_.world_size; }
  int ep_size() const { return layout_.ep_size; }
  int ep_rank() const { return layout_.ep_rank(rank()); }
  int dp_size() const { return layout_.dp_size(); }
  int dp_rank() const { return layout_.dp_rank(rank()); }

  Communicator& world() { return world_; }
  Communicator& ep_group() { return *ep_group_; }
  Communicator& edp_group() { return *edp_group_; }
  // The group the token dispatcher's all-to-all runs over: the EP group, or
  // its hierarchical form. nodes_per_ep_group() is 1 when flat.
  Communicator& dispatch_group() { return hierarchical_ ? *hierarchical_ : *ep_group_; }
  int nodes_per_ep_group() const { return nodes_per_ep_group_; }

 private:
  ProcessGrid(Communicator& world, GridLayout layout) : world_(world), layout_(layout) {}
  Communicator& world_;
  GridLayout layout_;
  std::unique_ptr<Communicator> ep_group_;
  std::unique_ptr<Communicator> edp_group_;
  std::unique_ptr<Communicator> hierarchical_;  // null: flat
  int nodes_per_ep_group_ = 1;
};

}  // namespace sb
