#include "launch/metrics_log.h"

#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

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
  if (file_) std::fclose(file_);
}

absl::Status MetricsLog::Open(const std::string& path, bool append) {
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!file_) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

void MetricsLog::Write(const JsonRecord& record) {
  if (!file_) return;
  std::fprintf(file_, "%s\n", record.ToString().c_str());
  std::fflush(file_);
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

}  // namespace sb
