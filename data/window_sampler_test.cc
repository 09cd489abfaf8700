// WindowSampler and the Feistel permutation: bijections of [0, n) for many
// n (including n = 1 and n just above a power of four), a new order each
// epoch and seed, and every window read exactly once per epoch.
#include "data/window_sampler.h"

#include <gtest/gtest.h>

#include <vector>

namespace sb {
namespace {

TEST(WindowSamplerTest, PermutationIsABijectionForManySizes) {
  for (int64_t n : {1, 2, 3, 4, 5, 7, 15, 16, 17, 63, 64, 65, 1000, 4096, 4097, 100003}) {
    // num_tokens = n * seq_len + 1 gives exactly n windows.
    const int seq_len = 3;
    WindowSampler sampler(n * seq_len + 1, seq_len, /*seed=*/42);
    ASSERT_EQ(sampler.num_windows(), n);
    for (int64_t epoch : {0, 1, 7}) {
      std::vector<int> hits(static_cast<size_t>(n), 0);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t p = sampler.Permute(epoch, i);
        ASSERT_GE(p, 0);
        ASSERT_LT(p, n);
        ++hits[static_cast<size_t>(p)];
      }
      for (int64_t w = 0; w < n; ++w) {
        ASSERT_EQ(hits[static_cast<size_t>(w)], 1) << "n=" << n << " epoch=" << epoch << " w=" << w;
      }
    }
  }
}

TEST(WindowSamplerTest, FeistelPermuteIsABijection) {
  for (int64_t n : {1, 2, 100, 4096}) {
    const int half_bits = FeistelHalfBits(n);
    std::vector<bool> seen(static_cast<size_t>(n), false);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = FeistelPermute(0xabcdefULL, n, half_bits, i);
      ASSERT_FALSE(seen[static_cast<size_t>(p)]) << "n=" << n << " repeats " << p;
      seen[static_cast<size_t>(p)] = true;
    }
  }
}

TEST(WindowSamplerTest, OrderChangesWithEpochAndSeed) {
  WindowSampler a(1001, 10, 1), b(1001, 10, 2);
  int same_epoch = 0, same_seed = 0;
  for (int64_t i = 0; i < a.num_windows(); ++i) {
    same_epoch += a.Permute(0, i) == a.Permute(1, i);
    same_seed += a.Permute(0, i) == b.Permute(0, i);
  }
  // A random permutation of 100 has ~1 fixed point relative to another.
  EXPECT_LT(same_epoch, 10);
  EXPECT_LT(same_seed, 10);
}

TEST(WindowSamplerTest, EachEpochReadsEveryWindowOnce) {
  const int seq_len = 8;
  WindowSampler sampler(8 * 50 + 3, seq_len, 9);
  const int64_t n = sampler.num_windows();
  ASSERT_EQ(n, 50);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int> hits(static_cast<size_t>(n), 0);
    for (int64_t i = epoch * n; i < (epoch + 1) * n; ++i) {
      const int64_t start = sampler.WindowStart(i);
      ASSERT_EQ(start % seq_len, 0);
      ASSERT_LE(start + seq_len + 1, 8 * 50 + 3) << "window past the stream";
      ++hits[static_cast<size_t>(start / seq_len)];
    }
    for (int h : hits) ASSERT_EQ(h, 1);
  }
}

TEST(WindowSamplerTest, NoWindowWhenStreamTooShort) {
  EXPECT_EQ(WindowSampler(10, 10, 0).num_windows(), 0);  // needs seq_len + 1 tokens
  EXPECT_EQ(WindowSampler(11, 10, 0).num_windows(), 1);
}

}  // namespace
}  // namespace sb
