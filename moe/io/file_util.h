// Small POSIX helpers shared by the safetensors reader and writers: errno as
// absl::Status naming the path, complete writes, atomic replacement of a
// file, and bounded whole-file reads (index.json).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sb {

// "<path>: cannot <action>: <strerror(errno)>" with a code chosen by errno
// (NotFound, PermissionDenied, ResourceExhausted, else Internal).
absl::Status ErrnoError(absl::string_view path, absl::string_view action);

// Writes all n bytes (retrying short writes and EINTR).
absl::Status WriteAll(int fd, const void* data, size_t n, absl::string_view path);

// fsyncs the directory holding `path`, so that a rename into it is durable.
absl::Status SyncParentDir(const std::string& path);

// Replaces `path` atomically: write(fd, tmp) fills `path + ".tmp"`, which is
// then fsync'd, closed and renamed over `path`, and the directory fsync'd.
// On any failure the temp file is removed and `path` is untouched.
absl::Status ReplaceFileAtomically(
    const std::string& path,
    const std::function<absl::Status(int fd, const std::string& tmp)>& write);

// The whole file, refused when larger than max_bytes.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes);

}  // namespace sb
