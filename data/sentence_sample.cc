#include "data/sentence_sample.h"

#include "moe/core/rng.h"

namespace sb {

SentenceReservoir::SentenceReservoir(int64_t capacity, int64_t max_line_bytes, uint64_t seed)
    : capacity_(capacity), max_line_bytes_(max_line_bytes), key_(StreamKey({seed, 0x5e47e7ceULL})) {}

void SentenceReservoir::AddDocument(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") != std::string_view::npos &&
        static_cast<int64_t>(line.size()) <= max_line_bytes_) {
      AddLine(line);
    }
    begin = end + 1;
  }
}

void SentenceReservoir::AddLine(std::string_view line) {
  const int64_t n = seen_++;
  if (n < capacity_) {
    sample_.emplace_back(line);
    return;
  }
  // Keep line n with probability capacity / (n + 1), replacing a uniform slot.
  const int64_t j = static_cast<int64_t>(UniformAt(key_, static_cast<uint64_t>(n)) * (n + 1));
  if (j < capacity_) sample_[static_cast<size_t>(j)].assign(line);
}

int64_t SentenceReservoir::sample_bytes() const {
  int64_t bytes = 0;
  for (const std::string& s : sample_) bytes += static_cast<int64_t>(s.size());
  return bytes;
}

}  // namespace sb
