// Feistel window order; see window_sampler.h.
#include "data/window_sampler.h"

#include "moe/core/check.h"
#include "moe/core/rng.h"

namespace sb {

int FeistelHalfBits(int64_t n) {
  int half_bits = 1;
  while ((int64_t{1} << (2 * half_bits)) < n) ++half_bits;
  return half_bits;
}

int64_t FeistelPermute(uint64_t key, int64_t n, int half_bits, int64_t i) {
  SB_CHECK(i >= 0 && i < n) << "index " << i << " of " << n;
  const uint64_t mask = (uint64_t{1} << half_bits) - 1;
  uint64_t x = static_cast<uint64_t>(i);
  // Cycle walking: re-encrypt until the value falls inside [0, n).
  // Terminates because the network is a bijection on [0, 4^half_bits).
  do {
    uint64_t left = x >> half_bits, right = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t f = Mix64(key ^ Mix64((round << 40) ^ right)) & mask;
      const uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits) | right;
  } while (x >= static_cast<uint64_t>(n));
  return static_cast<int64_t>(x);
}

WindowSampler::WindowSampler(int64_t num_tokens, int seq_len, uint64_t seed)
    : num_windows_(seq_len > 0 && num_tokens > seq_len ? (num_tokens - 1) / seq_len : 0),
      seq_len_(seq_len),
      seed_(seed),
      half_bits_(FeistelHalfBits(num_windows_)) {}

int64_t WindowSampler::Permute(int64_t epoch, int64_t i) const {
  SB_CHECK(i >= 0 && i < num_windows_) << "window " << i << " of " << num_windows_;
  const uint64_t key = StreamKey({seed_, static_cast<uint64_t>(epoch), 0x5a3d1e5ULL});
  return FeistelPermute(key, num_windows_, half_bits_, i);
}

int64_t WindowSampler::WindowStart(int64_t sample_index) const {
  SB_CHECK(num_windows_ > 0) << "token stream shorter than one window";
  const int64_t epoch = sample_index / num_windows_;
  return Permute(epoch, sample_index % num_windows_) * seq_len_;
}

}  // namespace sb
