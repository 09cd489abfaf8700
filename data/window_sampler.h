// Deterministic window order over a token stream: window w covers tokens
// [w * seq_len, w * seq_len + seq_len + 1). Sample i of the run (counting
// across epochs) is window Permute(epoch, i % num_windows), epoch = i /
// num_windows, with a keyed bijection (a Feistel network with cycle walking)
// instead of a stored shuffle, so 10^12-token corpora cost no memory.
#pragma once

#include <cstdint>

namespace sb {

// Keyed bijection of [0, n): a 4-round Feistel network on [0, 4^half_bits)
// (half_bits = FeistelHalfBits(n)) with cycle walking back into [0, n).
// O(1) memory; expected < 4 network passes per call.
int FeistelHalfBits(int64_t n);
int64_t FeistelPermute(uint64_t key, int64_t n, int half_bits, int64_t i);

class WindowSampler {
 public:
  // num_tokens in the stream; each sample needs seq_len + 1 tokens.
  WindowSampler(int64_t num_tokens, int seq_len, uint64_t seed);
  int64_t num_windows() const { return num_windows_; }
  // First token of the window read by global sample index i (i >= 0).
  int64_t WindowStart(int64_t sample_index) const;
  // The bijection of [0, num_windows) used in `epoch` (exposed for tests).
  int64_t Permute(int64_t epoch, int64_t i) const;

 private:
  int64_t num_windows_;
  int seq_len_;
  uint64_t seed_;
  int half_bits_;  // Feistel halves cover [0, 4^half_bits) >= num_windows
};

}  // namespace sb
