#include "launch/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "moe/io/file_util.h"
#include "nlohmann/json.hpp"

namespace sb {

JsonRecord& JsonRecord::Add(const std::string& key, double value) {
  // JSON has no NaN/Inf: write null so that readers do not choke.
  fields_.emplace_back(key, std::isfinite(value) ? absl::StrFormat("%.8g", value) : "null");
  return *this;
}

JsonRecord& JsonRecord::Add(const std::string& key, int64_t value) {
  fields_.emplace_back(key, absl::StrCat(value));
  return *this;
}

JsonRecord& JsonRecord::Add(const std::string& key, const std::vector<int64_t>& values) {
  fields_.emplace_back(key, absl::StrCat("[", absl::StrJoin(values, ","), "]"));
  return *this;
}

std::string JsonRecord::ToString() const {
  std::string out = "{";
  for (size_t i = 0; i < fields_.size(); ++i) {
    absl::StrAppend(&out, i ? ", " : "", "\"", fields_[i].first, "\": ", fields_[i].second);
  }
  return out + "}";
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status MetricsLog::Open(const std::string& path, bool append) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC),
               0644);
  if (fd_ < 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  path_ = path;
  return absl::OkStatus();
}

absl::Status MetricsLog::Write(const JsonRecord& record) {
  if (fd_ < 0) return absl::OkStatus();
  const std::string line = record.ToString() + "\n";
  const off_t end = ::lseek(fd_, 0, SEEK_END);
  ssize_t written;
  do {
    written = ::write(fd_, line.data(), line.size());
  } while (written < 0 && errno == EINTR);
  if (written == static_cast<ssize_t>(line.size())) return absl::OkStatus();
  const int err = written < 0 ? errno : ENOSPC;  // a short write: the device is full
  if (end >= 0) {
    const int unused = ::ftruncate(fd_, end);  // best effort: drop the partial line
    (void)unused;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      path_, ": cannot write a metrics record (", std::strerror(err), ")"));
}

absl::Status TrimMetricsLog(const std::string& path, int64_t max_step) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return absl::OkStatus();
  std::ifstream in(path);
  if (!in) return absl::PermissionDeniedError(absl::StrCat("cannot read ", path));
  std::string kept, line;
  while (std::getline(in, line)) {
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object()) continue;
    const auto step = record.find("step");
    if (step == record.end() || !step->is_number() || step->get<double>() > max_step) continue;
    kept += line + "\n";
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return ReplaceFileAtomically(path, [&](int fd, const std::string& tmp) {
    return WriteAll(fd, kept.data(), kept.size(), tmp);
  });
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

}  // namespace sb
