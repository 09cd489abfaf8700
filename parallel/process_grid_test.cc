// Process-grid layout and the single-process paths of parallel/ (no MPI:
// ctest runs this binary directly, so Runtime is a world of one).
#include "parallel/process_grid.h"

#include "gtest/gtest.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/runtime.h"

namespace sb {
namespace {

TEST(GridLayout, EightRanksEpFour) {
  const GridLayout g{8, 4};
  EXPECT_EQ(g.dp_size(), 2);
  EXPECT_EQ(g.EpGroupRanks(5), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(g.ExpertDataParallelRanks(5), (std::vector<int>{1, 5}));
  EXPECT_EQ(g.ep_rank(6), 2);
  EXPECT_EQ(g.dp_rank(6), 1);
  EXPECT_EQ(g.FirstExpert(6, 16), 8);  // experts [8, 12)
}

TEST(GridLayout, EpOneAndEpWorld) {
  const GridLayout dp_only{4, 1};
  EXPECT_EQ(dp_only.EpGroupRanks(2), (std::vector<int>{2}));
  EXPECT_EQ(dp_only.ExpertDataParallelRanks(2), (std::vector<int>{0, 1, 2, 3}));
  const GridLayout ep_only{4, 4};
  EXPECT_EQ(ep_only.EpGroupRanks(2), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(ep_only.ExpertDataParallelRanks(2), (std::vector<int>{2}));
}

TEST(BlockRanksPerNode, BlocksOfEqualSizeOnly) {
  EXPECT_EQ(BlockRanksPerNode({"a", "a", "b", "b", "c", "c"}), 2);
  EXPECT_EQ(BlockRanksPerNode({"a", "a", "a", "a"}), 4);
  EXPECT_EQ(BlockRanksPerNode({"a", "b", "c"}), 1);
  EXPECT_EQ(BlockRanksPerNode({"a", "b", "a", "b"}), 0) << "round-robin placement";
  EXPECT_EQ(BlockRanksPerNode({"a", "a", "b"}), 0) << "uneven nodes";
  EXPECT_EQ(BlockRanksPerNode({"a", "a", "b", "b", "a", "a"}), 0) << "a node in two blocks";
  EXPECT_EQ(BlockRanksPerNode({}), 0);
}

TEST(Runtime, WorldOfOneWithoutLauncher) {
  if (LaunchedByMpiLauncher()) {
    GTEST_SKIP() << "started by a launcher (OMPI_/PMI_/PMIX_/SLURM_ variables set): not a world of one";
  }
  auto rt = Runtime::Start();
  ASSERT_TRUE(rt.ok()) << rt.status();
  EXPECT_FALSE((*rt)->info().mpi);
  EXPECT_EQ((*rt)->world_size(), 1);
  EXPECT_TRUE((*rt)->AllOk(true));
  EXPECT_FALSE((*rt)->AllOk(false));
  auto grid = ProcessGrid::Create((*rt)->world(), 1);
  ASSERT_TRUE(grid.ok()) << grid.status();
  EXPECT_EQ((*grid)->ep_group().size(), 1);
  EXPECT_FALSE(ProcessGrid::Create((*rt)->world(), 2).ok());
}

TEST(AllToAllDispatcher, GroupOfOneIsIdentity) {
  SelfCommunicator self("ep");
  AllToAllDispatcher d(self, 3);
  const DispatchPlan plan = d.Plan({2, 0, 1});
  EXPECT_EQ(plan.rows_per_local_expert, (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(plan.total_recv, 3);
  Tensor x = Tensor::FromVector(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor y = Tensor::Zeros({3, 2}), z = Tensor::Zeros({3, 2});
  d.Dispatch(plan, x, y);
  d.Combine(plan, y, z);
  EXPECT_EQ(z.ToDoubles(), x.ToDoubles());
}

}  // namespace
}  // namespace sb
