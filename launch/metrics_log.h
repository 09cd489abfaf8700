// Run-directory outputs: metrics.jsonl (one JSON object per logged step)
// and the live progress line on stdout.
#pragma once

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
  // Appends one line with a single checked write(2). On failure (a full disk:
  // ENOSPC, EIO, a short write) the file is cut back to its previous end, so
  // no partial line stays, and the error names the file. A closed log
  // (never opened) writes nothing.
  absl::Status Write(const JsonRecord& record);

 private:
  int fd_ = -1;
  std::string path_;
};

// Drops the records of `path` whose "step" is above max_step (and lines
// that are not JSON objects with a numeric step, such as a line cut off by a
// crash), so that a resumed run does not repeat steps. The file is replaced
// atomically; a missing file is fine.
absl::Status TrimMetricsLog(const std::string& path, int64_t max_step);

// "12m03s", "1h02m", "45s"
std::string FormatDuration(double seconds);

}  // namespace sb
