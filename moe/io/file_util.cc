#include "moe/io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sb {

absl::Status ErrnoError(absl::string_view path, absl::string_view action) {
  const int err = errno;
  const std::string message = absl::StrCat(path, ": cannot ", action, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR: return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS: return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
    case ENOMEM: return absl::ResourceExhaustedError(message);
    default: return absl::InternalError(message);
  }
}

absl::Status WriteAll(int fd, const void* data, size_t n, absl::string_view path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(path, "write");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status SyncParentDir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(dir, "open directory");
  const int rc = ::fsync(fd);
  absl::Status status = rc == 0 ? absl::OkStatus() : ErrnoError(dir, "fsync directory");
  ::close(fd);
  return status;
}

absl::Status ReplaceFileAtomically(
    const std::string& path,
    const std::function<absl::Status(int fd, const std::string& tmp)>& write) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(tmp, "create");
  absl::Status status = write(fd, tmp);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError(tmp, "fsync");
  if (::close(fd) != 0 && status.ok()) status = ErrnoError(tmp, "close");
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
    status = ErrnoError(tmp, absl::StrCat("rename to ", path));
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return SyncParentDir(path);
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(path, "open");
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0) {
      if (errno == EINTR) continue;
      absl::Status status = ErrnoError(path, "read");
      ::close(fd);
      return status;
    }
    if (r == 0) break;
    if (out.size() + static_cast<size_t>(r) > max_bytes) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than the limit of ", max_bytes, " bytes"));
    }
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

}  // namespace sb
