// Every configs/*.textproto in the repository parses, validates and survives
// ResolvedConfigText; the example configs route the blocks their header
// comments say. SB_SOURCE_DIR (set by ctest) points at the repository.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "configs/config.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "moe/core/device_memory.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

fs::path SourceDir() {
  const char* dir = std::getenv("SB_SOURCE_DIR");
  return dir != nullptr ? fs::path(dir) : fs::path(SB_SOURCE_DIR_FALLBACK);
}

// name (without .textproto) -> parsed config, for every example config.
std::map<std::string, TrainConfig> LoadAll() {
  std::map<std::string, TrainConfig> configs;
  for (const fs::directory_entry& entry : fs::directory_iterator(SourceDir() / "configs")) {
    if (entry.path().extension() != ".textproto") continue;
    auto config = LoadConfigFile(entry.path().string());
    EXPECT_TRUE(config.ok()) << config.status();
    if (config.ok()) configs[entry.path().stem().string()] = *config;
  }
  return configs;
}

TEST(ExampleConfigs, AllParseAndValidate) {
  const std::map<std::string, TrainConfig> configs = LoadAll();
  for (const char* name : {"tiny", "switch_top1", "stmoe_top2", "gpu_1b"}) {
    EXPECT_EQ(configs.count(name), 1u) << "configs/" << name << ".textproto is missing";
  }
  for (auto [name, config] : configs) {
    // The smallest world the config runs on: one expert-parallel group. GPU
    // configs validate as they are on one rank (in a CUDA build), and with
    // the CPU on their expert-parallel world (one GPU per process for now).
    const int world_size = std::max(1, config.parallel().expert_parallel_size());
    if (config.train().device() == switchboard::TrainLoopConfig::CUDA) {
      TrainConfig one_gpu = config;
      ASSERT_TRUE(ApplyOverride("parallel.expert_parallel_size=1", &one_gpu).ok());
      if (CudaBuilt()) {
        EXPECT_TRUE(ValidateConfig(one_gpu, 1).ok()) << name << " on one GPU";
      }
      ASSERT_TRUE(ApplyOverride("train.device=CPU", &config).ok());
    }
    const absl::Status status = ValidateConfig(config, world_size);
    EXPECT_TRUE(status.ok()) << name << ": " << status;

    auto resolved = ParseConfigText(ResolvedConfigText(config), name);
    ASSERT_TRUE(resolved.ok()) << resolved.status();
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equivalent(*resolved, config)) << name;
  }
}

std::vector<bool> Blocks(std::initializer_list<int> moe_blocks, int num_layers) {
  std::vector<bool> mask(num_layers, false);
  for (int b : moe_blocks) mask[b] = true;
  return mask;
}

TEST(ExampleConfigs, RouteWhatTheirCommentsSay) {
  std::map<std::string, TrainConfig> configs = LoadAll();
  EXPECT_EQ(MoeLayerMask(configs["tiny"]), Blocks({0, 1, 2, 3}, 4));
  EXPECT_EQ(MoeLayerMask(configs["switch_top1"]), Blocks({1, 3}, 4));
  EXPECT_EQ(configs["switch_top1"].moe().top_k(), 1);
  EXPECT_EQ(MoeLayerMask(configs["stmoe_top2"]), Blocks({3, 7}, 8));
  EXPECT_EQ(configs["stmoe_top2"].optimizer().name(), switchboard::OptimizerConfig::ADAFACTOR);
  EXPECT_EQ(configs["gpu_1b"].moe().num_experts() / configs["gpu_1b"].parallel().expert_parallel_size(),
            4);
}

}  // namespace
}  // namespace sb
