#include "launch/run_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "moe/io/file_util.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

std::string HostName() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) return "?";
  return host;
}

// "pid 123 on host h since 2026-11-25 10:00:00 UTC", what the lock file holds.
std::string HolderText() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &utc);
  return absl::StrFormat("pid %d on host %s since %s", ::getpid(), HostName(), when);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunDirLock>> RunDirLock::Acquire(const std::string& run_dir) {
  if (run_dir.empty()) {
    return absl::InvalidArgumentError("--run_dir is empty: give the directory this run writes to");
  }
  std::unique_ptr<RunDirLock> lock(new RunDirLock());
  lock->run_dir_ = run_dir;
  lock->path_ = (fs::path(run_dir) / kRunDirLockFile).string();
  std::error_code ec;
  if (!fs::exists(run_dir, ec)) {
    lock->created_run_dir_ = fs::create_directories(run_dir, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create run_dir ", run_dir, ": ", ec.message()));
    }
  } else if (!fs::is_directory(run_dir, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("run_dir ", run_dir, " is not a directory"));
  }
  lock->fd_ = ::open(lock->path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock->fd_ < 0) return ErrnoError(lock->path_, "create the run directory's lock file");
  if (::flock(lock->fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      errno = err;
      return ErrnoError(lock->path_, "lock");
    }
    // Written by the holder once it had the lock; may be empty in the
    // moment between its open and its write.
    char text[512] = {};
    const ssize_t n = ::pread(lock->fd_, text, sizeof(text) - 1, 0);
    const std::string holder(absl::StripAsciiWhitespace(n > 0 ? text : ""));
    lock->created_run_dir_ = false;  // not ours to remove
    return absl::FailedPreconditionError(absl::StrCat(
        "run_dir ", run_dir, " is in use by another run (", holder.empty() ? "starting" : holder,
        ": it holds ", lock->path_, "); wait for it to end, or choose another --run_dir"));
  }
  const std::string text = HolderText() + "\n";
  if (::ftruncate(lock->fd_, 0) != 0 || ::pwrite(lock->fd_, text.data(), text.size(), 0) < 0) {
    return ErrnoError(lock->path_, "write");
  }
  return lock;
}

RunDirLock::~RunDirLock() {
  std::error_code ec;
  if (created_run_dir_) {
    // Only the lock file in it: the run wrote nothing. Removed while still
    // locked, so no other run can have started in between.
    bool only_lock = true;
    for (const fs::directory_entry& e : fs::directory_iterator(run_dir_, ec))
      if (e.path().filename() != kRunDirLockFile) only_lock = false;
    if (!ec && only_lock) {
      fs::remove(path_, ec);
      fs::remove(run_dir_, ec);
    }
  }
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace sb
