#include "launch/metrics_log.h"

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
