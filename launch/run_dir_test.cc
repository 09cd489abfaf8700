// One run per run directory: the flock'd run_dir/.lock refuses a second
// holder (naming the first), is released however the holder ends, and a
// start that fails in a directory it created leaves no directory behind; a
// fresh run refuses a directory holding another run's metrics.jsonl unless
// told to overwrite it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/run_dir_lock.h"
#include "launch/trainer.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(RunDirLock, ASecondHolderIsRefusedWithTheFirstOnesPid) {
  testing::TempDir dir;
  const std::string run = dir.Path("run");
  auto first = RunDirLock::Acquire(run);
  ASSERT_TRUE(first.ok()) << first.status();
  // flock locks belong to open file descriptions: a second open in this
  // process conflicts just as another process's would.
  auto second = RunDirLock::Acquire(run);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat("run_dir ", run, " is in use by another run (pid ", ::getpid(),
                                     " on host ")));
  EXPECT_THAT(second.status().message(), HasSubstr("choose another --run_dir"));
  // The refused attempt must not remove the holder's directory.
  EXPECT_TRUE(fs::exists(run + "/.lock"));
  testing::WriteBytes(run + "/metrics.jsonl", "{}\n");  // the run writes something
  first->reset();
  EXPECT_TRUE(fs::exists(run + "/metrics.jsonl"));
  EXPECT_TRUE(RunDirLock::Acquire(run).ok()) << "released with its holder";
}

TEST(RunDirLock, AKilledHolderLeavesNoStaleLock) {
  testing::TempDir dir;
  const std::string run = dir.Path("run");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    auto lock = RunDirLock::Acquire(run);
    char c = lock.ok() ? '1' : '0';
    (void)!::write(ready[1], &c, 1);
    ::pause();  // until killed
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, '1');
  EXPECT_THAT(RunDirLock::Acquire(run).status().message(),
              HasSubstr(absl::StrCat("(pid ", child, " on host ")));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(RunDirLock::Acquire(run).ok());
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST(RunDirLock, AnUnusedDirectoryItCreatedIsRemovedAndAnExistingOneKept) {
  testing::TempDir dir;
  const std::string fresh = dir.Path("fresh");
  ASSERT_TRUE(RunDirLock::Acquire(fresh).ok());  // released at once, nothing written
  EXPECT_FALSE(fs::exists(fresh)) << "a failed start left its run directory";
  const std::string existing = dir.Path("existing");
  fs::create_directories(existing);
  ASSERT_TRUE(RunDirLock::Acquire(existing).ok());
  EXPECT_TRUE(fs::exists(existing));
  EXPECT_THAT(RunDirLock::Acquire("").status().message(), HasSubstr("--run_dir is empty"));
  testing::WriteBytes(dir.Path("file"), "x");
  EXPECT_THAT(RunDirLock::Acquire(dir.Path("file")).status().message(), HasSubstr("is not a directory"));
}

TEST(CheckFreshRunDir, AnEarlierRunsMetricsNeedOverwriteAndCheckpointsNeedResume) {
  testing::TempDir dir;
  const std::string run = dir.Path("run");
  EXPECT_TRUE(CheckFreshRunDir(run, false).ok()) << "a new directory";
  fs::create_directories(run);
  testing::WriteBytes(run + "/metrics.jsonl", "{\"step\": 1}\n");
  const absl::Status s = CheckFreshRunDir(run, false);
  EXPECT_THAT(s.message(), HasSubstr(run + "/metrics.jsonl exists (an earlier run in this directory): "
                                     "pass --overwrite"));
  EXPECT_TRUE(CheckFreshRunDir(run, true).ok());
  fs::create_directories(run + "/checkpoints");
  testing::WriteBytes(run + "/checkpoints/latest", "step_2\n");
  EXPECT_THAT(CheckFreshRunDir(run, true).message(), HasSubstr("latest exists: pass --resume"));
}

}  // namespace
}  // namespace sb
