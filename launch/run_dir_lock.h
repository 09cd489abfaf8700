// One run per run directory (docs/cli.md, "Run directory"): rank 0 of a
// `switchboard train` job holds an exclusive flock(2) on run_dir/.lock for
// the life of the run, so a second run on the same directory (which would
// interleave metrics.jsonl and break the other's checkpoint saves) is
// refused at start with the holder's pid and host. The kernel drops the lock
// when the process ends, however it ends, so a crash never leaves a stale
// lock; the file itself stays (it is only the lock's handle). flock works
// across NFS clients (Linux maps it to NFS byte-range locks).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace sb {

class RunDirLock {
 public:
  // Creates run_dir (and parents) when missing and locks it. InvalidArgument
  // for an empty path, FailedPrecondition naming the holder when another
  // process holds the lock, another error when the directory or the lock file
  // cannot be made.
  static absl::StatusOr<std::unique_ptr<RunDirLock>> Acquire(const std::string& run_dir);
  // Unlocks. When Acquire created run_dir and the run left nothing else in it
  // (a start that failed before writing), removes the lock file and run_dir,
  // so that a failed start leaves no trace.
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  RunDirLock() = default;
  int fd_ = -1;
  std::string run_dir_, path_;
  bool created_run_dir_ = false;
};

inline constexpr const char* kRunDirLockFile = ".lock";

}  // namespace sb
