// Run-directory outputs: metrics.jsonl (one JSON object per logged step)
// and the live progress line on stdout.
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sb {

// One JSON object with numeric fields in insertion order.
class JsonRecord {
 public:
  JsonRecord& Add(const std::string& key, double value);
  JsonRecord& Add(const std::string& key, int64_t value);
  JsonRecord& Add(const std::string& key, const std::vector<int64_t>& values);
  std::string ToString() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

class MetricsLog {
 public:
  ~MetricsLog();
  // Appends to run_dir/metrics.jsonl (truncates unless append).
  absl::Status Open(const std::string& path, bool append);
  void Write(const JsonRecord& record);

 private:
  std::FILE* file_ = nullptr;
};

// "12m03s", "1h02m", "45s"
std::string FormatDuration(double seconds);

}  // namespace sb
