// A bounded, deterministic sample of lines for tokenizer training, so that
// training time does not grow with the corpus: reservoir sampling
// (Vitter's Algorithm R) with the counter-based RNG of moe/core/rng.h keyed
// by the seed, so the same corpus and seed give the same sample (and model).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sb {

class SentenceReservoir {
 public:
  // Keeps at most `capacity` lines of at most `max_line_bytes` bytes each
  // (longer lines are skipped: SentencePiece would ignore them anyway).
  SentenceReservoir(int64_t capacity, int64_t max_line_bytes, uint64_t seed);
  // Offers every non-blank line of a document.
  void AddDocument(std::string_view text);
  int64_t lines_seen() const { return seen_; }
  const std::vector<std::string>& sample() const { return sample_; }
  int64_t sample_bytes() const;

 private:
  void AddLine(std::string_view line);
  int64_t capacity_;
  int64_t max_line_bytes_;
  uint64_t key_;
  int64_t seen_ = 0;
  std::vector<std::string> sample_;
};

}  // namespace sb
