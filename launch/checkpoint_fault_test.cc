// Checkpoints under faults: a process killed (SIGKILL) at every point of a
// save leaves `latest` naming a complete, loadable checkpoint; a rank failing
// mid-save makes every rank fail and publishes nothing; missing, truncated,
// garbled and mismatched files (and random damage) give errors that name the
// file, never a crash, and never change what is on disk.
#include <signal.h>

#include <filesystem>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/checkpoint_testing.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::SimRank;

using testing::SaveFilled;

// Loads the checkpoint `latest` names; returns its step after checking the contents.
absl::StatusOr<int64_t> LoadLatest(const std::string& run_dir, uint64_t salt) {
  const TrainConfig config = testing::SmallConfig();
  SimRank r = testing::MakeSimRank(config, 0);
  absl::StatusOr<std::string> dir = LatestCheckpoint(run_dir);
  if (!dir.ok()) return dir.status();
  auto state = LoadCheckpoint(*dir, config, *r.model, *r.optimizer, testing::SimTopology(0, 1, 1, nullptr));
  if (!state.ok()) return state.status();
  EXPECT_EQ(testing::FirstMismatch(r, salt), "");
  return state->step();
}

constexpr const char* kPoints[] = {"tmp_created",   "model_written", "optimizer_written",
                                   "indexes_written", "state_written", "renamed",
                                   "latest_updated"};

class KilledDuringSave : public ::testing::TestWithParam<const char*> {};

TEST_P(KilledDuringSave, LatestStillNamesACompleteCheckpoint) {
  const std::string point = GetParam();
  testing::TempDir dir;
  ASSERT_TRUE(SaveFilled(dir.path(), 2, /*salt=*/1).ok());
  CheckpointSaveOptions kill;
  kill.fault_hook = [&](absl::string_view at) {
    if (at == point) raise(SIGKILL);
    return absl::OkStatus();
  };
  EXPECT_EXIT((void)SaveFilled(dir.path(), 4, /*salt=*/2, kill), ::testing::KilledBySignal(SIGKILL), "");
  // Only a kill after `latest` was replaced exposes the new checkpoint.
  const bool published = point == "latest_updated";
  const absl::StatusOr<int64_t> step = LoadLatest(dir.path(), published ? 2 : 1);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(*step, published ? 4 : 2);
  const std::string root = CheckpointsDir(dir.path());
  EXPECT_EQ(fs::exists(root + "/step_4"), point == "renamed" || published);
  // The next save cleans up and succeeds.
  ASSERT_TRUE(SaveFilled(dir.path(), 4, /*salt=*/3).ok());
  EXPECT_EQ(*LoadLatest(dir.path(), 3), 4);
  for (const auto& e : fs::directory_iterator(root))
    EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
}

INSTANTIATE_TEST_SUITE_P(Points, KilledDuringSave, ::testing::ValuesIn(kPoints));

TEST(CheckpointFault, OneRankFailingMakesEveryRankFailAndPublishesNothing) {
  testing::TempDir dir;
  ASSERT_TRUE(SaveFilled(dir.path(), 2, 1).ok());
  for (const char* point : {"tmp_created", "model_written", "optimizer_written"}) {
    const TrainConfig config = testing::SmallConfig(2);
    testing::FakeCollective collective(2);
    std::vector<absl::Status> results(2);
    testing::RunRanks(2, [&](int rank) {
      SimRank r = testing::MakeSimRank(config, rank);
      CheckpointSaveOptions options;
      options.fault_hook = [&](absl::string_view at) {
        return rank == 1 && at == point ? absl::ResourceExhaustedError("disk full (injected)")
                                        : absl::OkStatus();
      };
      results[rank] = SaveCheckpoint(dir.path(), testing::SimState(config, 4, 4), *r.model,
                                     *r.optimizer, testing::SimTopology(rank, 2, 2, &collective),
                                     options);
    });
    EXPECT_THAT(results[1].message(), HasSubstr("disk full")) << point;
    EXPECT_THAT(results[0].message(), HasSubstr("another rank failed")) << point;
    const std::string root = CheckpointsDir(dir.path());
    EXPECT_FALSE(fs::exists(root + "/step_4")) << point;
    EXPECT_FALSE(fs::exists(root + "/.tmp_step_4")) << point;
    EXPECT_EQ(*LoadLatest(dir.path(), 1), 2) << point;
  }
}

TEST(CheckpointFault, RankZeroFailingAtPublishLeavesLatest) {
  testing::TempDir dir;
  ASSERT_TRUE(SaveFilled(dir.path(), 2, 1).ok());
  for (const char* point : {"indexes_written", "state_written"}) {
    CheckpointSaveOptions options;
    options.fault_hook = [&](absl::string_view at) {
      return at == point ? absl::InternalError("injected") : absl::OkStatus();
    };
    EXPECT_FALSE(SaveFilled(dir.path(), 4, 2, options).ok());
    EXPECT_FALSE(fs::exists(CheckpointsDir(dir.path()) + "/step_4"));
    EXPECT_EQ(*LoadLatest(dir.path(), 1), 2);
  }
}

// A saved checkpoint at run/checkpoints/step_3 to damage, copied per case.
class Damaged : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(SaveFilled(tmp_.Path("pristine"), 3, 1).ok());
    step_ = CheckpointsDir(tmp_.Path("pristine")) + "/step_3";
  }
  // A fresh copy of the run directory (tmp/run); returns its step_3 path.
  std::string Copy() {
    fs::remove_all(tmp_.Path("run"));
    fs::copy(tmp_.Path("pristine"), tmp_.Path("run"), fs::copy_options::recursive);
    return CheckpointsDir(tmp_.Path("run")) + "/step_3";
  }
  absl::Status Load(const std::string& step_dir, const TrainConfig& config = testing::SmallConfig()) {
    return testing::LoadInto(step_dir, config);
  }
  testing::TempDir tmp_;
  std::string step_;
};

TEST_F(Damaged, EachBrokenFileGivesAnErrorNamingIt) {
  struct Case {
    const char* file;
    std::function<void(const std::string& path)> damage;
  };
  const std::string text = "# nothing\nstep: 3\n";
  const std::vector<Case> cases = {
      {"model-00001-of-00001.safetensors", [](const std::string& p) { fs::resize_file(p, fs::file_size(p) / 2); }},
      {"optimizer-00001-of-00001.safetensors", [](const std::string& p) { fs::resize_file(p, 5); }},
      {"optimizer-00001-of-00001.safetensors", [](const std::string& p) {
         std::string b = testing::ReadBytes(p);
         b.replace(8, 10, "{\"x\":[1,2]");
         testing::WriteBytes(p, b);
       }},
      {"model-00001-of-00001.safetensors", [](const std::string& p) { fs::remove(p); }},
      {"model.safetensors.index.json", [](const std::string& p) { testing::WriteBytes(p, "{\"weight_map\": {"); }},
      {"optimizer.safetensors.index.json", [](const std::string& p) { fs::remove(p); }},
      {"trainer_state.textproto", [](const std::string& p) { testing::WriteBytes(p, "step: 3 {{{"); }},
      {"trainer_state.textproto", [](const std::string& p) { testing::WriteBytes(p, "step: 3\nbogus: 1\n"); }},
      {"trainer_state.textproto", [&](const std::string& p) {
         std::string s = testing::ReadBytes(p);
         s.replace(s.find("step: 3"), 7, "step: -3");
         testing::WriteBytes(p, s);
       }},
      {"trainer_state.textproto", [&](const std::string& p) {
         std::string s = testing::ReadBytes(p);
         s.replace(s.find("format_version: 2"), 17, "format_version: 9");
         testing::WriteBytes(p, s);
       }},
      {"trainer_state.textproto", [&](const std::string& p) {  // no config
         testing::WriteBytes(p, text);
       }},
      {"trainer_state.textproto", [](const std::string& p) { fs::remove(p); }},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string dir = Copy();
    cases[i].damage(dir + "/" + cases[i].file);
    const absl::Status s = Load(dir);
    EXPECT_FALSE(s.ok()) << "case " << i;
    EXPECT_THAT(s.message(), HasSubstr(cases[i].file)) << "case " << i << ": " << s;
  }
}

TEST_F(Damaged, MismatchedFilesNameTheFieldOrTensor) {
  // Architecture and optimizer kind come from the trainer state.
  TrainConfig wider = testing::SmallConfig();
  wider.mutable_model()->set_ffn_dim(16);
  EXPECT_THAT(Load(Copy(), wider).message(), HasSubstr("model.ffn_dim = 12 in the checkpoint, 16"));
  EXPECT_THAT(Load(Copy(), testing::SmallConfig(1, "ADAFACTOR")).message(),
              HasSubstr("optimizer.name = ADAMW in the checkpoint, ADAFACTOR in the config"));
  TrainConfig other_seed = testing::SmallConfig();
  other_seed.mutable_train()->set_seed(5);
  EXPECT_THAT(Load(Copy(), other_seed).message(), HasSubstr("train.seed"));
  TrainConfig dense = testing::SmallConfig();
  dense.mutable_moe()->clear_moe_layers();
  dense.mutable_moe()->add_moe_layers(2);
  EXPECT_THAT(Load(Copy(), dense).message(), HasSubstr("MoE blocks"));
  TrainConfig shorter = testing::SmallConfig();
  shorter.mutable_train()->set_steps(2);
  EXPECT_THAT(Load(Copy(), shorter).message(), HasSubstr("train.steps = 2"));
  // Weights of another model under a trainer state that matches the config.
  const std::string dir = Copy();
  const std::string other = tmp_.Path("other");
  TrainConfig big = testing::SmallConfig();
  big.mutable_model()->set_ffn_dim(16);
  SimRank r = testing::MakeSimRank(big, 0);
  ASSERT_TRUE(SaveCheckpoint(other, testing::SimState(big, 3, 3), *r.model, *r.optimizer,
                             testing::SimTopology(0, 1, 1, nullptr)).ok());
  // Errors name the index that maps the tensor to its shard.
  for (const char* f : {"model", "optimizer"}) {
    const std::string d = Copy();
    const std::string shard = absl::StrCat("/", f, "-00001-of-00001.safetensors");
    fs::copy_file(CheckpointsDir(other) + "/step_3" + shard, d + shard,
                  fs::copy_options::overwrite_existing);
    const absl::Status s = Load(d);
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat(f, ".safetensors.index.json"))) << s;
    EXPECT_THAT(s.message(), HasSubstr("mlp.gate_proj.weight")) << s;
  }
}

TEST_F(Damaged, LatestMissingGarbledOrDangling) {
  const std::string run = tmp_.Path("run");
  Copy();
  const std::string latest = CheckpointsDir(run) + "/latest";
  fs::remove(latest);
  EXPECT_THAT(LatestCheckpoint(run).status().message(), HasSubstr("no checkpoint to resume from"));
  testing::WriteBytes(latest, "step_3/../../etc\n");
  EXPECT_THAT(LatestCheckpoint(run).status().message(), HasSubstr("latest: garbled"));
  testing::WriteBytes(latest, std::string(5000, 'x'));
  EXPECT_THAT(LatestCheckpoint(run).status().message(), HasSubstr("latest"));
  testing::WriteBytes(latest, "step_9\n");
  EXPECT_THAT(LatestCheckpoint(run).status().message(), HasSubstr("names step_9, but"));
  testing::WriteBytes(latest, "step_3");  // no newline is fine
  EXPECT_TRUE(LatestCheckpoint(run).ok());
  EXPECT_THAT(LatestCheckpoint(tmp_.Path("nowhere")).status().message(), HasSubstr("no checkpoint"));
}

TEST_F(Damaged, RandomDamageNeverCrashesAndNeverWritesFiles) {
  std::mt19937_64 rng(12345);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(step_)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  int errors = 0;
  const int trials = 300;
  for (int t = 0; t < trials; ++t) {
    const std::string dir = Copy();
    const std::string path = dir + "/" + files[rng() % files.size()];
    std::string bytes = testing::ReadBytes(path);
    switch (rng() % 4) {
      case 0: bytes.resize(rng() % (bytes.size() + 1)); break;  // truncate
      case 1:                                                   // flip bytes, mostly in headers
        for (int k = 0; k < 4; ++k) bytes[rng() % std::min<size_t>(bytes.size(), 400)] ^= 1 + rng() % 255;
        break;
      case 2: bytes.insert(rng() % (bytes.size() + 1), std::string(1 + rng() % 16, '\xff')); break;
      default: bytes = std::string(rng() % 64, static_cast<char>(rng())); break;
    }
    testing::WriteBytes(path, bytes);
    const absl::Status s = Load(dir);
    if (!s.ok()) ++errors;
    EXPECT_EQ(testing::ReadBytes(path), bytes) << "a load changed " << path;
  }
  EXPECT_GT(errors, trials / 2);
}

}  // namespace
}  // namespace sb
