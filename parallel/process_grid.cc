// ProcessGrid: EP groups of consecutive ranks, EDP groups of equal EP rank.
#include "parallel/process_grid.h"

#include "absl/strings/str_cat.h"
#include "parallel/hierarchical_all_to_all.h"

namespace sb {

std::vector<int> GridLayout::EpGroupRanks(int rank) const {
  std::vector<int> ranks;
  const int first = dp_rank(rank) * ep_size;
  for (int r = first; r < first + ep_size; ++r) ranks.push_back(r);
  return ranks;
}

std::vector<int> GridLayout::ExpertDataParallelRanks(int rank) const {
  std::vector<int> ranks;
  for (int r = ep_rank(rank); r < world_size; r += ep_size) ranks.push_back(r);
  return ranks;
}

absl::StatusOr<std::unique_ptr<ProcessGrid>> ProcessGrid::Create(
    Communicator& world, int ep_size, int hierarchical_ranks_per_node) {
  if (ep_size < 1 || world.size() % ep_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.expert_parallel_size = ", ep_size,
                     " must be >= 1 and divide the world size ", world.size()));
  }
  const int per_node = hierarchical_ranks_per_node;
  const bool spans_nodes = per_node > 0 && ep_size > per_node;
  if (spans_nodes && ep_size % per_node != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel.all_to_all = HIERARCHICAL: expert-parallel groups of ", ep_size,
        " ranks do not span whole nodes of ", per_node, " ranks"));
  }
  const GridLayout layout{world.size(), ep_size};
  auto grid = std::unique_ptr<ProcessGrid>(new ProcessGrid(world, layout));
  const int rank = world.rank();
  // MPI_Comm_split orders members by key: world rank keeps the EP rank equal
  // to the position in the EP group and the EDP rank equal to dp_rank.
  grid->ep_group_ = world.Split(layout.dp_rank(rank), rank, "ep");
  grid->edp_group_ = world.Split(layout.ep_rank(rank), rank, "edp");
  SB_CHECK_EQ(grid->ep_group_->rank(), layout.ep_rank(rank));
  SB_CHECK_EQ(grid->edp_group_->rank(), layout.dp_rank(rank));
  if (spans_nodes) {
    auto hierarchical = HierarchicalCommunicator::Create(*grid->ep_group_, per_node);
    if (!hierarchical.ok()) return hierarchical.status();
    grid->nodes_per_ep_group_ = (*hierarchical)->nodes();
    grid->hierarchical_ = std::move(*hierarchical);
  }
  return grid;
}

}  // namespace sb
