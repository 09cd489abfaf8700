// Choosing the next token from logits, as transformers' generate does:
// greedy (argmax; ties go to the lower id) when temperature <= 0, otherwise
// logits / temperature, then top-k (keep the k most likely), then top-p
// (keep the smallest most-likely set whose probability reaches p; at least
// one token), renormalise and draw. Draws are counter-based (moe/core/rng.h):
// a pure function of (seed, step), so a seed reproduces a generation.
#pragma once

#include <cstdint>
#include <vector>

namespace sb {

struct SamplingOptions {
  double temperature = 0.0;  // <= 0: greedy
  int top_k = 0;             // <= 0: no limit
  double top_p = 1.0;        // >= 1: no limit
  uint64_t seed = 0;
};

// The distribution SampleToken draws from (probabilities over all ids, zero
// for filtered ones); greedy puts 1 on the argmax.
std::vector<double> SamplingDistribution(const std::vector<double>& logits,
                                         const SamplingOptions& options);

// The token for generation step `step` (0 = the first new token).
int32_t SampleToken(const std::vector<double>& logits, const SamplingOptions& options,
                    uint64_t step);

}  // namespace sb
