// One progress line on stderr for long jobs: "12.3/48.0 MB  4.1 MB/s  1234
// docs  ETA 9s". Rewritten in place (\r) on a terminal; otherwise printed as
// a new line at most every 10 s so that logs stay short.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sb {

class ProgressLine {
 public:
  ProgressLine(std::string label, int64_t total_bytes, bool enabled);
  // Reports `bytes` of the total done and `documents` so far.
  void Update(int64_t bytes, int64_t documents);
  // Prints the final state and ends the line.
  void Finish(int64_t bytes, int64_t documents);
  double elapsed_seconds() const;

 private:
  void Print(int64_t bytes, int64_t documents, bool final_line);
  std::string label_;
  int64_t total_bytes_;
  bool enabled_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace sb
