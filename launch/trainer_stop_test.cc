// Runs that stop before their last step (docs/checkpoints.md, "Stopping
// early"): SIGTERM / SIGINT / SIGUSR1 finish the step, save and return, and
// the saved run resumes bit for bit; a second signal ends the process at
// once; data, evaluation and metrics.jsonl failures after the first step
// save a checkpoint before returning; bad data is found when the trainer is
// created, not at its first read.
#include <signal.h>
#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/stop_signals.h"
#include "launch/trainer_testing.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class Stop : public testing::TrainerTest {};

class StopBySignal : public testing::TrainerTest, public ::testing::WithParamInterface<int> {};

TEST_P(StopBySignal, FinishesTheStepSavesAndResumesBitwise) {
  const int sig = GetParam();
  TrainConfig config = config_;
  config.mutable_checkpoint()->set_every_steps(0);  // the quickstart's: only at the end
  auto whole = Make("whole", config);
  ASSERT_TRUE(whole->Run().ok());
  EXPECT_EQ(whole->stopped_by_signal(), 0);

  auto a = Make("a", config);
  // The signal arrives while step 3 (0-based 2) runs.
  a->set_gradient_hook([sig](int64_t step, Model&) {
    if (step == 2) ::raise(sig);
  });
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const absl::Status s = a->Run();
  const std::string out = ::testing::internal::GetCapturedStdout();
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(a->stopped_by_signal(), sig);
  EXPECT_THAT(err, HasSubstr(absl::StrCat(StopSignalName(sig),
                                          ": finishing this step, then saving a checkpoint")));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("stopped by ", StopSignalName(sig),
                                          " after step 3 of 8: saved checkpoint ", Ckpt("a", 3))));
  EXPECT_EQ(*LatestCheckpoint(dir_.Path("a")), Ckpt("a", 3));
  EXPECT_EQ(ReadTrainerState(Ckpt("a", 3))->step(), 3);
  // The stop is complete: the handler stays, so that a late signal (mpirun's
  // SIGTERM once another rank exited) exits 3 instead of killing (below).
  struct sigaction now;
  ASSERT_EQ(::sigaction(sig, nullptr, &now), 0);
  EXPECT_NE(now.sa_handler, SIG_DFL);

  auto b = Make("a", config);
  ASSERT_TRUE(b->Resume().ok());
  ASSERT_TRUE(b->Run().ok());
  EXPECT_TRUE(WeightBytes(*b) == WeightBytes(*whole)) << "the resumed run differs";
  EXPECT_EQ(testing::ReadBytes(Ckpt("a", 8) + "/model-00001-of-00001.safetensors"),
            testing::ReadBytes(Ckpt("whole", 8) + "/model-00001-of-00001.safetensors"));
}

INSTANTIATE_TEST_SUITE_P(Signals, StopBySignal, ::testing::Values(SIGTERM, SIGINT, SIGUSR1),
                         [](const auto& p) { return std::string(StopSignalName(p.param)); });

TEST_F(Stop, ASecondSignalEndsTheProcessAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto a = Make("a", config_);
        a->set_gradient_hook([](int64_t step, Model&) {
          if (step == 1) {
            ::raise(SIGTERM);
            ::raise(SIGTERM);
          }
        });
        (void)a->Run();
      },
      ::testing::KilledBySignal(SIGTERM), "SIGTERM again: stopping at once");
}

TEST_F(Stop, ASignalAfterTheStopCheckpointExitsWithThree) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto a = Make("a", config_);
        a->set_gradient_hook([](int64_t step, Model&) {
          if (step == 1) ::raise(SIGUSR1);
        });
        if (!a->Run().ok() || a->stopped_by_signal() != SIGUSR1) std::_Exit(10);
        ::raise(SIGTERM);  // as mpirun does to the ranks still running
        std::_Exit(11);
      },
      ::testing::ExitedWithCode(3), "");
}

TEST_F(Stop, ASignalDuringANonFiniteStreakSavesNothingNew) {
  auto a = Make("a", config_);
  a->set_gradient_hook([](int64_t step, Model& model) {
    if (step == 4 || step == 5) model.Parameters()[0]->grad.data<float>()[0] = NAN;
    if (step == 5) ::raise(SIGTERM);
  });
  ::testing::internal::CaptureStdout();
  ASSERT_TRUE(a->Run().ok());
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_THAT(out, HasSubstr("stopped by SIGTERM after step 6 of 8: no checkpoint saved: the last 2 "
                             "steps (since step 5)"));
  EXPECT_THAT(out, HasSubstr("the last checkpoint is " + Ckpt("a", 4)));
  EXPECT_EQ(*LatestCheckpoint(dir_.Path("a")), Ckpt("a", 4));
}

TEST_F(Stop, AFailedEvaluationSavesACheckpointFirst) {
  TrainConfig config = config_;
  config.mutable_data()->set_train_path(WriteTokenShards("train", 4000, 0x5eed));
  // Validation windows all hold a token outside the vocab: evaluation fails.
  config.mutable_data()->set_val_path(WriteTokenShards("val", 2000, 0x5eed, 0, 2000));
  config.mutable_train()->set_eval_every(2);
  config.mutable_checkpoint()->set_every_steps(0);
  auto a = Make("a", config);
  const absl::Status s = a->Run();
  EXPECT_THAT(s.message(), HasSubstr("evaluation: validation data (data.val_path)"));
  EXPECT_THAT(s.message(), HasSubstr("saved checkpoint " + Ckpt("a", 2)));
  EXPECT_TRUE(IsInputError(s));
  EXPECT_TRUE(VerifyCheckpoint(Ckpt("a", 2)).ok());
}

TEST_F(Stop, TrainingDataThatFailsMidRunSavesTheStepsBefore) {
  TrainConfig config = config_;
  // One bad token: the first step whose windows cover it fails.
  config.mutable_data()->set_train_path(WriteTokenShards("train", 4000, 0x5eed, 2500, 2501));
  config.mutable_train()->set_steps(200);
  config.mutable_checkpoint()->set_every_steps(0);
  auto a = Make("a", config);
  int64_t done = 0;
  a->set_step_observer([&](int64_t step, const StepMetrics&) { done = step + 1; });
  const absl::Status s = a->Run();
  ASSERT_GT(done, 0) << "the bad token must not be in the first step";
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("step ", done + 1, ": training data")));
  EXPECT_THAT(s.message(), HasSubstr("saved checkpoint " + Ckpt("a", done)));
  EXPECT_EQ(*LatestCheckpoint(dir_.Path("a")), Ckpt("a", done));
}

TEST_F(Stop, AFailedMetricsWriteStopsTheRunAfterSaving) {
  // A full disk under metrics.jsonl (/dev/full: every write is ENOSPC).
  fs::create_directories(dir_.Path("a"));
  fs::create_symlink("/dev/full", dir_.Path("a/metrics.jsonl"));
  auto a = Make("a", config_);
  a->set_overwrite_run_files(true);
  const absl::Status s = a->Run();
  EXPECT_THAT(s.message(), HasSubstr(dir_.Path("a/metrics.jsonl") +
                                     ": cannot write a metrics record (No space left on device)"));
  EXPECT_THAT(s.message(), HasSubstr("saved checkpoint " + Ckpt("a", 1)));
  EXPECT_FALSE(IsInputError(s)) << "a failure while running exits 1";
}

TEST(MetricsLog, AShortWriteLeavesNoPartialLine) {
  testing::TempDir dir;
  const std::string path = dir.Path("metrics.jsonl");
  MetricsLog log;
  ASSERT_TRUE(log.Open(path, false).ok());
  JsonRecord record;
  record.Add("step", int64_t{1}).Add("loss", 4.5);
  ASSERT_TRUE(log.Write(record).ok());
  const std::string first = testing::ReadBytes(path);
  // The file may grow by 5 more bytes: the next record is cut short (EFBIG).
  struct rlimit old;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit cap = old;
  cap.rlim_cur = first.size() + 5;
  auto previous = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &cap), 0);
  const absl::Status s = log.Write(record);
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, previous);
  EXPECT_THAT(s.message(), HasSubstr(path + ": cannot write a metrics record"));
  EXPECT_EQ(testing::ReadBytes(path), first) << "a partial line was left";
}

TEST_F(Stop, DataTooShortOrFromAnotherTokenizerIsRefusedAtCreate) {
  TrainConfig config = config_;
  const std::string train = WriteTokenShards("train", 4000, 0x5eed);
  config.mutable_data()->set_train_path(train);
  config.mutable_data()->set_val_path(WriteTokenShards("short", 16, 0x5eed));  // seq_len 16
  auto t = Trainer::Create(config, "");
  EXPECT_THAT(t.status().message(), HasSubstr("data.val_path: "));
  EXPECT_THAT(t.status().message(), HasSubstr("16 tokens, fewer than one sample of train.seq_len + 1 = 17"));
  config.mutable_data()->set_val_path(WriteTokenShards("other", 4000, 0xbad));
  t = Trainer::Create(config, "");
  EXPECT_THAT(t.status().message(), HasSubstr("data.val_path holds tokens of another tokenizer"));
  config.mutable_data()->set_val_path(dir_.Path("corpus.txt"));  // byte-level text
  t = Trainer::Create(config, "");
  EXPECT_THAT(t.status().message(), HasSubstr("byte-level text, no tokenizer vs tokenizer"));
  config.mutable_data()->set_val_path("");
  config.mutable_data()->set_train_path(WriteTokenShards("tiny", 10, 0x5eed));
  t = Trainer::Create(config, "");
  EXPECT_THAT(t.status().message(), HasSubstr("data.train_path: "));
  EXPECT_THAT(t.status().message(), HasSubstr("fewer than one sample"));
}

}  // namespace
}  // namespace sb
