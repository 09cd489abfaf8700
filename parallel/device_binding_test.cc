// Local rank from the launcher's environment and the GPU it binds (no GPU
// needed: the environment and the device count are inputs).
#include "parallel/device_binding.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace sb {
namespace {

std::function<const char*(const char*)> Env(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(LocalRank, OpenMpiFirstThenSlurmThenMpichThenTheSplit) {
  const LocalRank ompi = LocalRankFromEnvironment(
      Env({{"OMPI_COMM_WORLD_LOCAL_RANK", "3"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "8"},
           {"SLURM_LOCALID", "0"}}),
      1, 4);
  EXPECT_EQ(ompi.rank, 3);
  EXPECT_EQ(ompi.size, 8);
  EXPECT_EQ(ompi.source, "OMPI_COMM_WORLD_LOCAL_RANK");
  const LocalRank slurm = LocalRankFromEnvironment(Env({{"SLURM_LOCALID", "2"}}), 1, 4);
  EXPECT_EQ(slurm.rank, 2);
  EXPECT_EQ(slurm.size, 4) << "Slurm gives no plain count: the split's";
  const LocalRank mpich = LocalRankFromEnvironment(
      Env({{"MPI_LOCALRANKID", "1"}, {"MPI_LOCALNRANKS", "2"}}), 0, 4);
  EXPECT_EQ(mpich.rank, 1);
  EXPECT_EQ(mpich.size, 2);
  const LocalRank split = LocalRankFromEnvironment(Env({{"SLURM_LOCALID", "x"}}), 1, 4);
  EXPECT_EQ(split.rank, 1);
  EXPECT_EQ(split.source, "MPI shared-memory split");
}

TEST(DeviceForLocalRank, OneRankPerGpu) {
  EXPECT_EQ(*DeviceForLocalRank({5, 8, "env"}, 8, "node0", nullptr), 5);
  EXPECT_EQ(*DeviceForLocalRank({1, 2, "env"}, 8, "node0", nullptr), 1) << "spare GPUs are fine";
  // srun --gpus-per-task=1: every rank sees its own device 0.
  EXPECT_EQ(*DeviceForLocalRank({3, 4, "env"}, 1, "node0", "3"), 0);
  EXPECT_EQ(*DeviceForLocalRank({0, 1, "env"}, 1, "node0", nullptr), 0);
}

TEST(DeviceForLocalRank, ErrorsNameTheHostAndCounts) {
  auto none = DeviceForLocalRank({0, 1, "SLURM_LOCALID"}, 0, "gpu7", nullptr);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no CUDA device visible to local rank 0 of 1 on host gpu7"),
            std::string::npos) << none.status();
  auto few = DeviceForLocalRank({2, 8, "env"}, 4, "gpu7", "0,1,2,3");
  ASSERT_FALSE(few.ok());
  EXPECT_NE(few.status().message().find("8 ranks on host gpu7 but only 4 GPUs visible"),
            std::string::npos) << few.status();
  EXPECT_NE(few.status().message().find("CUDA_VISIBLE_DEVICES=0,1,2,3"), std::string::npos);
  auto shared = DeviceForLocalRank({1, 2, "env"}, 1, "gpu7", nullptr);
  ASSERT_FALSE(shared.ok());
  EXPECT_NE(shared.status().message().find("2 ranks share the only GPU of host gpu7"),
            std::string::npos) << shared.status();
  EXPECT_FALSE(DeviceForLocalRank({4, 4, "env"}, 8, "gpu7", nullptr).ok());
}

}  // namespace
}  // namespace sb
