// ProcessGrid: EP groups of consecutive ranks, EDP groups of equal EP rank.
#include "parallel/process_grid.h"

#include "absl/strings/str_cat.h"

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

absl::StatusOr<std::unique_ptr<ProcessGrid>> ProcessGrid::Create(Communicator& world,
                                                                  int ep_size) {
  if (ep_size < 1 || world.size() % ep_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.expert_parallel_size = ", ep_size,
                     " must be >= 1 and divide the world size ", world.size()));
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
  return grid;
}

}  // namespace sb
