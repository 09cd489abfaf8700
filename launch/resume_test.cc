// Trainer-level checkpoints: 2K steps in one go versus K steps, a save, a
// resume in a FRESH trainer and K more give bitwise-identical losses,
// parameters, optimizer state and checkpoint files; a resume with another
// grad_accum continues the data cursor; a failed resume changes no file;
// non-finite steps are skipped, logged and stop the run after
// checkpoint.max_nonfinite_steps in a row, and no checkpoint is saved during
// such a streak; a start or resume whose first step fails writes nothing; a
// corrupt `latest` names the newest checkpoint that verifies.
#include <filesystem>
#include <fstream>
#include <map>

#include "data/batch_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/trainer_testing.h"
#include "nlohmann/json.hpp"

namespace sb {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class Resume : public testing::TrainerTest {
 protected:
  struct Outcome {
    std::map<int64_t, StepMetrics> steps;
    std::string weights, state;  // bytes of every parameter / optimizer state tensor
  };

  // Runs `t` to the end, recording every step.
  static absl::Status RunAll(Trainer& t, Outcome* out) {
    t.set_step_observer([out](int64_t step, const StepMetrics& m) { out->steps[step] = m; });
    absl::Status s = t.Run();
    out->weights = WeightBytes(t);
    for (const auto& [name, tensor] : t.optimizer().State())
      out->state.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
    return s;
  }

  // 8 steps in one go against 4, a save, a resume in a fresh trainer and 4 more.
  void ExpectResumeIsBitwise(const TrainConfig& config);
};

TEST_F(Resume, KStepsSaveResumeKStepsIsBitwiseIdenticalToTwoK) { ExpectResumeIsBitwise(config_); }

// Routing variants: their random draws are keyed by (seed, step, micro-batch,
// layer, token) and the auxiliary-loss-free selection bias is saved with the
// weights, so a resumed run continues bit for bit.
TEST_F(Resume, TokenChoiceVariantsWithSelectionBiasResumeBitwise) {
  TrainConfig config = config_;
  auto* moe = config.mutable_moe();
  moe->set_noisy_gating(true);
  moe->set_balance_loss(switchboard::MoeConfig::CV_IMPORTANCE_LOAD);
  moe->set_second_expert_policy(switchboard::MoeConfig::RANDOM);
  moe->set_batch_prioritized_routing(true);
  moe->set_aux_free_bias_update_rate(0.01);
  moe->set_expert_dropout(0.2);
  ExpectResumeIsBitwise(config);
}

TEST_F(Resume, ExpertChoiceWithSharedExpertsResumesBitwise) {
  TrainConfig config = config_;
  config.mutable_moe()->set_routing(switchboard::MoeConfig::EXPERT_CHOICE);
  config.mutable_moe()->set_num_shared_experts(2);
  config.mutable_moe()->set_expert_dropout(0.2);
  ExpectResumeIsBitwise(config);
}

void Resume::ExpectResumeIsBitwise(const TrainConfig& config) {
  Outcome whole, resumed;
  auto a = Make("a", config);
  ASSERT_TRUE(RunAll(*a, &whole).ok());
  ASSERT_EQ(whole.steps.size(), 8u);

  auto b = Make("b", config);  // a fresh trainer, as in a new process
  ASSERT_TRUE(b->ResumeFrom(Ckpt("a", 4)).ok());
  EXPECT_EQ(b->start_step(), 4);
  ASSERT_TRUE(RunAll(*b, &resumed).ok());
  ASSERT_EQ(resumed.steps.size(), 4u);
  for (int64_t step = 4; step < 8; ++step) {
    EXPECT_EQ(resumed.steps[step].loss, whole.steps[step].loss) << "step " << step;
    EXPECT_EQ(resumed.steps[step].grad_norm, whole.steps[step].grad_norm) << "step " << step;
    EXPECT_EQ(resumed.steps[step].load_imbalance, whole.steps[step].load_imbalance) << step;
    EXPECT_EQ(resumed.steps[step].selection_bias_abs_max, whole.steps[step].selection_bias_abs_max)
        << "step " << step;
  }
  if (config.moe().aux_free_bias_update_rate() > 0) {
    EXPECT_GT(whole.steps[7].selection_bias_abs_max, 0.0) << "the selection bias never moved";
  }
  EXPECT_TRUE(resumed.weights == whole.weights) << "final parameters differ";
  EXPECT_TRUE(resumed.state == whole.state) << "final optimizer state differs";
  for (const char* f : {"model-00001-of-00001.safetensors", "optimizer-00001-of-00001.safetensors",
                        "trainer_state.textproto"}) {
    EXPECT_EQ(testing::ReadBytes(Ckpt("b", 8) + "/" + f), testing::ReadBytes(Ckpt("a", 8) + "/" + f))
        << f;
  }
}

TEST_F(Resume, FromLatestInPlaceTrimsTheMetricsLog) {
  auto a = Make("a", config_);
  ASSERT_TRUE(a->Run().ok());
  // Pretend the run died after step 8 was trained but before it was saved.
  fs::copy(dir_.Path("a"), dir_.Path("c"), fs::copy_options::recursive);
  testing::WriteBytes(CheckpointsDir(dir_.Path("c")) + "/latest", "step_4\n");
  fs::remove_all(Ckpt("c", 8));
  auto c = Make("c", config_);
  ASSERT_TRUE(c->Resume().ok());
  ASSERT_TRUE(c->Run().ok());
  std::ifstream log(dir_.Path("c") + "/metrics.jsonl");
  std::vector<int64_t> steps;
  for (std::string line; std::getline(log, line);) steps.push_back(nlohmann::json::parse(line)["step"]);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(testing::ReadBytes(Ckpt("c", 8) + "/model-00001-of-00001.safetensors"),
            testing::ReadBytes(Ckpt("a", 8) + "/model-00001-of-00001.safetensors"));
}

TEST_F(Resume, AnotherGradAccumContinuesTheDataCursor) {
  auto a = Make("a", config_);
  ASSERT_TRUE(a->Run().ok());
  TrainConfig single = config_;
  single.mutable_train()->set_grad_accum_steps(1);
  // A saved 4 steps x 2 micro-batches: the next unconsumed one is 8, not 4 * 1.
  auto b = Make("b", single);
  ASSERT_TRUE(b->ResumeFrom(Ckpt("a", 4)).ok());
  EXPECT_EQ(b->FirstMicroBatch(4), 8);
  EXPECT_EQ(b->FirstMicroBatch(5), 9);
  // Step 4's loss is that of micro-batch 8 on the restored model.
  auto probe = Make("", single);
  ASSERT_TRUE(probe->ResumeFrom(Ckpt("a", 4)).ok());
  auto source = OpenBatchSource(single.data().train_path(), single.train().seed());
  ASSERT_TRUE(source.ok());
  Batch batch;
  ASSERT_TRUE((*source)->Read(8, 2, 16, &batch).ok());
  const double want = probe->model().Forward(batch.inputs, batch.targets, StepContext{true, 7, 4, 0}).loss;
  Outcome out;
  ASSERT_TRUE(RunAll(*b, &out).ok());
  EXPECT_EQ(out.steps[4].loss, want);
  auto state = ReadTrainerState(Ckpt("b", 8));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->micro_batches_consumed(), 8 + 4);
  EXPECT_EQ(state->tokens_seen(), (8 + 4) * 2 * 16);
  EXPECT_EQ(state->layout().grad_accum_steps(), 1);
}

using testing::Snapshot;

TEST_F(Resume, FailedResumeOrFreshStartChangesNoFile) {
  auto a = Make("a", config_);
  ASSERT_TRUE(a->Run().ok());
  const auto before = Snapshot(dir_.Path("a"));
  TrainConfig other = config_;
  other.mutable_model()->set_d_model(32);
  auto b = Make("a", other);
  const absl::Status s = b->Resume();
  EXPECT_THAT(s.message(), HasSubstr("model.d_model = 16 in the checkpoint, 32 in the config"));
  EXPECT_THAT(s.message(), HasSubstr("step_8/trainer_state.textproto"));
  auto c = Make("a", config_);
  EXPECT_THAT(c->Run().message(), HasSubstr("pass --resume"));
  EXPECT_EQ(Snapshot(dir_.Path("a")), before);
}

// Training data whose every window holds a token outside the vocab: the
// first step fails.
TEST_F(Resume, AStartWhoseFirstStepFailsWritesNothing) {
  TrainConfig bad = config_;
  bad.mutable_data()->set_train_path(WriteTokenShards("bad", 4000, 0x5eed, 0, 4000));
  // A resume: config.textproto is not rewritten, metrics.jsonl not trimmed.
  auto a = Make("a", config_);
  ASSERT_TRUE(a->Run().ok());
  const auto before = Snapshot(dir_.Path("a"));
  auto b = Make("a", bad);
  ASSERT_TRUE(b->ResumeFrom(Ckpt("a", 4)).ok());
  const absl::Status s = b->Run();
  EXPECT_THAT(s.message(), HasSubstr("step 5: training data (data.train_path)"));
  EXPECT_THAT(s.message(), HasSubstr("outside the vocab"));
  EXPECT_TRUE(IsInputError(s)) << "bad data exits 2";
  EXPECT_EQ(Snapshot(dir_.Path("a")), before);
  // A fresh start: no run directory appears.
  auto c = Make("fresh", bad);
  EXPECT_THAT(c->Run().message(), HasSubstr("step 1: training data"));
  EXPECT_FALSE(fs::exists(dir_.Path("fresh")));
}

TEST_F(Resume, CorruptLatestNamesTheNewestGoodCheckpointWhichResumesBitwise) {
  auto a = Make("a", config_);
  ASSERT_TRUE(a->Run().ok());
  const std::string pristine = testing::ReadBytes(Ckpt("a", 8) + "/model-00001-of-00001.safetensors");
  // A flipped exponent bit near the end of step_8's weights (header intact).
  const std::string shard = Ckpt("a", 8) + "/model-00001-of-00001.safetensors";
  std::string bytes = pristine;
  bytes[bytes.size() - 5] ^= 0x40;
  testing::WriteBytes(shard, bytes);
  TrainConfig longer = config_;
  longer.mutable_train()->set_steps(12);
  auto b = Make("a", longer);
  const absl::Status s = b->Resume();
  EXPECT_THAT(s.message(), HasSubstr(shard + ": tensor '"));
  EXPECT_THAT(s.message(), HasSubstr("checksum mismatch"));
  EXPECT_THAT(s.message(), HasSubstr("the newest older checkpoint that verifies is " + Ckpt("a", 4) +
                                     ": resume from it with --resume_from step_4"));
  // Resumed from step_4, the run reproduces step_8 bit for bit.
  auto c = Make("a", config_);
  auto dir = ResolveResumeFrom(dir_.Path("a"), "step_4");
  ASSERT_TRUE(dir.ok()) << dir.status();
  ASSERT_TRUE(c->ResumeFrom(*dir).ok());
  ASSERT_TRUE(c->Run().ok());
  EXPECT_TRUE(testing::ReadBytes(shard) == pristine) << "step_8 differs from the first run's";
}

// NaN in one gradient element at the chosen steps.
void PoisonAt(Trainer& t, std::function<bool(int64_t)> when) {
  t.set_gradient_hook([when](int64_t step, Model& model) {
    if (when(step)) model.Parameters()[0]->grad.data<float>()[0] = NAN;
  });
}

TEST_F(Resume, NonFiniteStepIsSkippedAndLogged) {
  auto t = Make("a", config_);
  PoisonAt(*t, [](int64_t step) { return step == 2; });
  std::map<int64_t, std::string> weights;
  t->set_step_observer([&](int64_t step, const StepMetrics& m) {
    EXPECT_EQ(m.skipped, step == 2) << step;
    for (const auto& [name, tensor] : NamedModelWeights(t->model()))
      weights[step].append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
  });
  ASSERT_TRUE(t->Run().ok());
  EXPECT_TRUE(weights[2] == weights[1]) << "the skipped step changed the parameters";
  EXPECT_FALSE(weights[3] == weights[2]) << "training did not continue";
  EXPECT_EQ(t->optimizer().step(), 7);
  const std::string log = testing::ReadBytes(dir_.Path("a") + "/metrics.jsonl");
  EXPECT_THAT(log, HasSubstr("{\"step\": 3, \"loss\": "));
  EXPECT_THAT(log, HasSubstr("\"grad_norm\": null, \"lr\": 0.0093971143, \"skipped\": 1}"));
  auto state = ReadTrainerState(Ckpt("a", 8));
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->skipped_steps(), 1);
  EXPECT_EQ(state->optimizer_step(), 7);
}

TEST_F(Resume, NoCheckpointIsSavedDuringANonFiniteStreak) {
  // Steps 4 and 5 are skipped: the save after step 4 would hold the weights
  // that diverged, so there is none; step_8 (after the recovery) is saved.
  auto t = Make("a", config_);
  PoisonAt(*t, [](int64_t step) { return step == 3 || step == 4; });
  ::testing::internal::CaptureStdout();
  ASSERT_TRUE(t->Run().ok());
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_THAT(out, HasSubstr("checkpoint at step 4 skipped: the last 1 steps (since step 4) had a "
                             "non-finite loss or gradient norm"));
  EXPECT_FALSE(fs::exists(Ckpt("a", 4)));
  auto state = ReadTrainerState(Ckpt("a", 8));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->nonfinite_streak(), 0);
  EXPECT_EQ(state->skipped_steps(), 2);
}

TEST_F(Resume, StopsAfterMaxNonfiniteStepsInARowNamingTheLastCheckpointBeforeThem) {
  TrainConfig config = config_;
  config.mutable_checkpoint()->set_max_nonfinite_steps(3);
  auto t = Make("a", config);
  PoisonAt(*t, [](int64_t step) { return step >= 5; });
  Outcome out;
  const absl::Status s = RunAll(*t, &out);
  EXPECT_THAT(s.message(), HasSubstr("stopping at step 8: 3 steps in a row had a non-finite loss"));
  EXPECT_THAT(s.message(), HasSubstr("checkpoint.max_nonfinite_steps = 3"));
  EXPECT_THAT(s.message(), HasSubstr("resume from " + Ckpt("a", 4) +
                                     ", the last checkpoint before the non-finite steps began at "
                                     "step 6 (none is saved during them): train --resume_from step_4"));
  EXPECT_FALSE(IsInputError(s));
  EXPECT_EQ(out.steps.size(), 8u);
  auto latest = LatestCheckpoint(dir_.Path("a"));
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, Ckpt("a", 4));
  EXPECT_EQ(ReadTrainerState(*latest)->nonfinite_streak(), 0);
  // No checkpoint at all before the streak: the advice says so.
  auto u = Make("b", config);
  PoisonAt(*u, [](int64_t step) { return step >= 1; });
  EXPECT_THAT(u->Run().message(),
              HasSubstr("start the run again: no checkpoint was saved before the non-finite steps "
                        "began at step 2"));
}

TEST_F(Resume, AbsurdLearningRateStopsTheRun) {
  TrainConfig config = config_;
  config.mutable_optimizer()->set_lr(1e30);
  config.mutable_checkpoint()->set_max_nonfinite_steps(2);
  auto t = Make("", config);
  EXPECT_THAT(t->Run().message(), HasSubstr("2 steps in a row had a non-finite loss"));
}

}  // namespace
}  // namespace sb
