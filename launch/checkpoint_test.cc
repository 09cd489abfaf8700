// Checkpoint directories: the on-disk layout, round trips, resharding
// between expert-parallel layouts (ranks simulated by threads), ZeRO-1-style
// sharded optimizer state, keep_last pruning and replacing a step directory
// left by an abandoned run. Faults and bad files: checkpoint_fault_test.cc.
#include <filesystem>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/checkpoint_testing.h"
#include "moe/io/model_weights.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
using testing::FakeCollective;
using testing::SimRank;

constexpr uint64_t kSalt = 7;

// Saves step `step` from `world` simulated ranks at expert-parallel size ep,
// every rank filled with the same global contents.
void SaveFromRanks(const std::string& run_dir, int world, int ep, int64_t step, int keep_last = 0,
                   bool sharded_optimizer = false) {
  const TrainConfig config = testing::SmallConfig(ep);
  FakeCollective collective(world);
  testing::RunRanks(world, [&](int rank) {
    SimRank r = testing::MakeSimRank(config, rank % ep);
    testing::FillByName(r, kSalt);
    CheckpointTopology topology = testing::SimTopology(rank, world, ep, &collective);
    topology.optimizer_sharded = sharded_optimizer;
    CheckpointSaveOptions options;
    options.keep_last = keep_last;
    const absl::Status s = SaveCheckpoint(run_dir, testing::SimState(config, step, step - 2),
                                          *r.model, *r.optimizer, topology, options);
    EXPECT_TRUE(s.ok()) << "rank " << rank << ": " << s;
  });
}

std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

TEST(Checkpoint, LayoutOfTwoExpertShardsAndTwoReplicas) {
  testing::TempDir dir;
  SaveFromRanks(dir.path(), /*world=*/4, /*ep=*/2, /*step=*/5);
  const std::string root = CheckpointsDir(dir.path());
  EXPECT_EQ(Listing(root), (std::set<std::string>{"latest", "step_5"}));
  EXPECT_EQ(testing::ReadBytes(root + "/latest"), "step_5\n");
  EXPECT_EQ(Listing(root + "/step_5"),
            (std::set<std::string>{"model-00001-of-00002.safetensors",
                                   "model-00002-of-00002.safetensors",
                                   "model.safetensors.index.json",
                                   "optimizer-00001-of-00002.safetensors",
                                   "optimizer-00002-of-00002.safetensors",
                                   "optimizer.safetensors.index.json", "trainer_state.textproto"}));
  // An HF-style sharded checkpoint: shard 1 has the replicated tensors and
  // experts 0-1, shard 2 experts 2-3.
  auto set = SafetensorsSet::Open(root + "/step_5");
  ASSERT_TRUE(set.ok()) << set.status();
  auto shard = [&](const std::string& name) { return (*set)->Info(name).ok(); };
  EXPECT_TRUE(shard("model.embed_tokens.weight"));
  EXPECT_TRUE(shard("model.layers.2.block_sparse_moe.experts.3.w2.weight"));
  const auto& files = (*set)->files();
  ASSERT_EQ(files.size(), 2u);
  for (const auto& f : files) {
    const bool first = f->path().find("00001-of") != std::string::npos;
    EXPECT_EQ(f->Find("model.norm.weight") != nullptr, first) << f->path();
    EXPECT_EQ(f->Find("model.layers.1.block_sparse_moe.experts.1.w1.weight") != nullptr, first);
    EXPECT_EQ(f->Find("model.layers.1.block_sparse_moe.experts.2.w1.weight") != nullptr, !first);
  }
  auto state = ReadTrainerState(root + "/step_5");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->step(), 5);
  EXPECT_EQ(state->optimizer_step(), 3);
  EXPECT_EQ(state->format_version(), kCheckpointFormatVersion);
  EXPECT_EQ(state->layout().world_size(), 4);
  EXPECT_EQ(state->layout().expert_parallel_size(), 2);
  EXPECT_EQ(state->layout().model_shards(), 2);
  EXPECT_EQ(state->config().model().d_model(), 8);
}

// Loads root/latest into every rank of a world of `world` at ep and checks
// contents by global name, the optimizer step and the trainer state.
void LoadIntoRanks(const std::string& run_dir, int world, int ep,
                   std::vector<SimRank>* loaded = nullptr) {
  const TrainConfig config = testing::SmallConfig(ep);
  FakeCollective collective(world);
  std::vector<SimRank> ranks(world);
  testing::RunRanks(world, [&](int rank) {
    SimRank& r = ranks[rank];
    r = testing::MakeSimRank(config, rank % ep);
    auto dir = LatestCheckpoint(run_dir);
    ASSERT_TRUE(dir.ok()) << dir.status();
    auto state = LoadCheckpoint(*dir, config, *r.model, *r.optimizer,
                                testing::SimTopology(rank, world, ep, &collective));
    ASSERT_TRUE(state.ok()) << "rank " << rank << ": " << state.status();
    EXPECT_EQ(testing::FirstMismatch(r, kSalt), "") << "rank " << rank;
    EXPECT_EQ(r.optimizer->step(), state->optimizer_step());
  });
  if (loaded) *loaded = std::move(ranks);
}

// Logits of the ep = 1 model after copying `shards`' weights into it by
// global name (a forward at ep > 1 needs a real all-to-all).
std::vector<double> LogitsOf(std::vector<SimRank>& shards) {
  SimRank whole = testing::MakeSimRank(testing::SmallConfig(1), 0);
  std::map<std::string, Tensor> target;
  for (auto& [name, t] : NamedModelWeights(*whole.model)) target[name] = t;
  size_t copied = 0;
  for (SimRank& r : shards) {
    for (auto& [name, t] : NamedModelWeights(*r.model)) {
      std::memcpy(target.at(name).raw(), t.raw(), t.nbytes());
      ++copied;
    }
  }
  EXPECT_GE(copied, target.size());
  std::vector<int32_t> ids = {1, 5, 9, 2, 7, 3, 10, 0};
  const Tensor x = Tensor::FromVector(ids, {2, 4});
  whole.model->Forward(x, x, StepContext{false, 0, 0, 0});
  return whole.model->logits().ToDoubles();
}

TEST(Checkpoint, SavedAtEp2LoadsAtEp4AndEp1WithIdenticalStateAndForward) {
  testing::TempDir dir;
  SaveFromRanks(dir.path(), /*world=*/2, /*ep=*/2, /*step=*/5);
  std::vector<SimRank> ep4, ep1;
  LoadIntoRanks(dir.path(), /*world=*/4, /*ep=*/4, &ep4);
  LoadIntoRanks(dir.path(), /*world=*/1, /*ep=*/1, &ep1);
  // The reference: an ep = 1 model filled directly, no checkpoint involved.
  std::vector<SimRank> direct(1);
  direct[0] = testing::MakeSimRank(testing::SmallConfig(1), 0);
  testing::FillByName(direct[0], kSalt);
  const std::vector<double> want = LogitsOf(direct);
  EXPECT_EQ(LogitsOf(ep1), want);
  EXPECT_EQ(LogitsOf(ep4), want);
  // And back up: ep 4 -> ep 2 with two replicas.
  testing::TempDir again;
  SaveFromRanks(again.path(), 4, 4, 6);
  LoadIntoRanks(again.path(), 4, 2);
}

// ZeRO-1 stand-in: State() lists only the entries this replica owns.
class OwnedSubset : public Optimizer {
 public:
  OwnedSubset(std::unique_ptr<Optimizer> inner, int index, int of)
      : inner_(std::move(inner)), index_(index), of_(of) {}
  void Step(double lr) override { inner_->Step(lr); }
  int64_t step() const override { return inner_->step(); }
  void set_step(int64_t step) override { inner_->set_step(step); }
  std::vector<std::pair<std::string, Tensor>> State() override {
    std::vector<std::pair<std::string, Tensor>> all = inner_->State(), owned;
    for (size_t i = 0; i < all.size(); ++i)
      if (static_cast<int>(i % of_) == index_) owned.push_back(all[i]);
    return owned;
  }

 private:
  std::unique_ptr<Optimizer> inner_;
  int index_, of_;
};

TEST(Checkpoint, ShardedOptimizerStateFromEveryRankLoadsUnsharded) {
  testing::TempDir dir;
  const TrainConfig config = testing::SmallConfig(1);
  FakeCollective collective(2);
  testing::RunRanks(2, [&](int rank) {
    SimRank r = testing::MakeSimRank(config, 0);
    testing::FillByName(r, kSalt);  // fills the whole inner state
    r.optimizer = std::make_unique<OwnedSubset>(std::move(r.optimizer), rank, 2);
    CheckpointTopology topology = testing::SimTopology(rank, 2, 1, &collective);
    topology.optimizer_sharded = true;
    const absl::Status s = SaveCheckpoint(dir.path(), testing::SimState(config, 4, 4), *r.model,
                                          *r.optimizer, topology);
    EXPECT_TRUE(s.ok()) << s;
  });
  const std::string step = CheckpointsDir(dir.path()) + "/step_4";
  EXPECT_TRUE(fs::exists(step + "/optimizer-00002-of-00002.safetensors"));
  EXPECT_TRUE(ReadTrainerState(step)->layout().optimizer_sharded());
  LoadIntoRanks(dir.path(), 2, 2);
  LoadIntoRanks(dir.path(), 1, 1);
}

TEST(Checkpoint, KeepLastPrunesOnlyAfterTheNewOneIsComplete) {
  testing::TempDir dir;
  for (int64_t step = 2; step <= 10; step += 2) SaveFromRanks(dir.path(), 1, 1, step, /*keep_last=*/2);
  const std::string root = CheckpointsDir(dir.path());
  EXPECT_EQ(Listing(root), (std::set<std::string>{"latest", "step_8", "step_10"}));
  EXPECT_EQ(testing::ReadBytes(root + "/latest"), "step_10\n");
  SaveFromRanks(dir.path(), 1, 1, 12, /*keep_last=*/0);
  EXPECT_EQ(Listing(root), (std::set<std::string>{"latest", "step_8", "step_10", "step_12"}));
}

TEST(Checkpoint, StepDirectoryOfAnAbandonedRunIsKeptThenReplaced) {
  // A run saved step_6 and died before updating `latest` (or was resumed
  // from step_2): its step_6 is not `latest`'s and survives pruning below
  // it; when the resumed run reaches step 6 it swaps in the new one.
  testing::TempDir dir;
  const std::string root = CheckpointsDir(dir.path());
  SaveFromRanks(dir.path(), 1, 1, 6);
  SaveFromRanks(dir.path(), 1, 1, 2);
  SaveFromRanks(dir.path(), 1, 1, 4, /*keep_last=*/1);
  EXPECT_EQ(Listing(root), (std::set<std::string>{"latest", "step_4", "step_6"}));
  testing::WriteBytes(root + "/step_6/marker", "old");
  SaveFromRanks(dir.path(), 1, 1, 6, /*keep_last=*/1);
  EXPECT_EQ(Listing(root), (std::set<std::string>{"latest", "step_6"}));
  EXPECT_FALSE(fs::exists(root + "/step_6/marker"));
  EXPECT_TRUE(ReadTrainerState(root + "/step_6").ok());
  LoadIntoRanks(dir.path(), 1, 1);
}

TEST(Checkpoint, StepDirNames) {
  EXPECT_EQ(StepDirName(120), "step_120");
  EXPECT_EQ(ParseStepDirName("step_120"), 120);
  EXPECT_EQ(ParseStepDirName("step_0"), 0);
  for (const char* bad : {"step_", "step_01", "step_-1", "step_+1", "step_1 ", "Step_1", "step_1/",
                          "step_99999999999999999999", ".tmp_step_1"}) {
    EXPECT_EQ(ParseStepDirName(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace sb
