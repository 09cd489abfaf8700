#include "data/progress.h"

#include <unistd.h>

#include <cstdio>

namespace sb {

ProgressLine::ProgressLine(std::string label, int64_t total_bytes, bool enabled)
    : label_(std::move(label)),
      total_bytes_(total_bytes),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

double ProgressLine::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressLine::Update(int64_t bytes, int64_t documents) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (since < (tty_ ? 0.5 : 10.0)) return;
  last_print_ = now;
  Print(bytes, documents, false);
}

void ProgressLine::Finish(int64_t bytes, int64_t documents) {
  if (enabled_) Print(bytes, documents, true);
}

void ProgressLine::Print(int64_t bytes, int64_t documents, bool final_line) {
  const double seconds = elapsed_seconds();
  const double mb_per_s = seconds > 0 ? bytes / 1e6 / seconds : 0.0;
  char eta[32] = "";
  if (!final_line && bytes > 0 && total_bytes_ > bytes) {
    std::snprintf(eta, sizeof(eta), "  ETA %.0fs", (total_bytes_ - bytes) / (bytes / seconds));
  }
  std::fprintf(stderr, "%s[%s] %.1f/%.1f MB  %.2f MB/s  %lld docs  %.1fs%s%s", tty_ ? "\r" : "",
               label_.c_str(), bytes / 1e6, total_bytes_ / 1e6, mb_per_s,
               static_cast<long long>(documents), seconds, eta,
               (final_line || !tty_) ? "\n" : "\x1b[K");
  std::fflush(stderr);
}

}  // namespace sb
