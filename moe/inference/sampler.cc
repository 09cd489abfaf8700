#include "moe/inference/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "moe/core/check.h"
#include "moe/core/rng.h"

namespace sb {

std::vector<double> SamplingDistribution(const std::vector<double>& logits,
                                         const SamplingOptions& options) {
  SB_CHECK(!logits.empty());
  const size_t V = logits.size();
  std::vector<double> probs(V, 0.0);
  if (options.temperature <= 0) {
    // max_element returns the first maximum: ties go to the lower id.
    probs[std::max_element(logits.begin(), logits.end()) - logits.begin()] = 1.0;
    return probs;
  }
  // Most likely first; equal logits keep id order (stable).
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return logits[a] > logits[b]; });
  size_t keep = V;
  if (options.top_k > 0) keep = std::min(keep, static_cast<size_t>(options.top_k));
  const double mx = logits[order[0]];
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    probs[order[i]] = std::exp((logits[order[i]] - mx) / options.temperature);
    sum += probs[order[i]];
  }
  if (options.top_p < 1.0) {
    // HF's TopPLogitsWarper: the smallest prefix whose mass reaches top_p.
    double mass = 0;
    size_t prefix = 0;
    while (prefix < keep) {
      mass += probs[order[prefix++]] / sum;
      if (mass >= options.top_p) break;
    }
    for (size_t i = prefix; i < keep; ++i) probs[order[i]] = 0;
    keep = prefix;
    sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += probs[order[i]];
  }
  for (double& p : probs) p /= sum;
  return probs;
}

int32_t SampleToken(const std::vector<double>& logits, const SamplingOptions& options,
                    uint64_t step) {
  const std::vector<double> probs = SamplingDistribution(logits, options);
  if (options.temperature <= 0) {
    return static_cast<int32_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
  }
  const double u = UniformAt(StreamKey({options.seed, 0x5a3b1e}), step);
  double cumulative = 0;
  int32_t last = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0) continue;
    cumulative += probs[i];
    last = static_cast<int32_t>(i);
    if (u < cumulative) return last;
  }
  return last;  // rounding left u above the total: the last kept token
}

}  // namespace sb
