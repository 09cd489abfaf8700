// Weighted mixture of prepared datasets (e.g. OpenMoE's half text, half
// code), still a pure function of the global micro-batch index.
//
// Scheme (docs/data.md, "Mixtures"): global sample g = index * batch_size + b
// falls in block m = g / kMixtureBlock at slot s = g % kMixtureBlock. Each
// block gives component k exactly quota[k] slots (weights rounded to
// 1/kMixtureBlock by largest remainder), and a keyed permutation of the block
// (Feistel, key (seed, m)) decides which slots: slot s maps to p =
// Permute(s); the component is the k with Q[k] <= p < Q[k+1] (Q = prefix sum
// of quotas) and its own sample index is m * quota[k] + (p - Q[k]). So every
// component sees consecutive sample indices 0, 1, 2, ... without gaps or
// repeats and cycles through its own epochs independently (a small dataset
// with a large weight is repeated more often). Cost per sample: one Feistel
// evaluation and a search over K components; no state, no memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/batch_source.h"
#include "data/shard_source.h"

namespace sb {

constexpr int64_t kMixtureBlock = 4096;

struct MixtureComponent {
  std::unique_ptr<ShardSource> source;
  double weight = 1.0;  // relative, > 0
};

class MixtureSource : public BatchSource {
 public:
  // Components must share one tokenizer (hash) and hence one vocab.
  static absl::StatusOr<std::unique_ptr<MixtureSource>> Create(
      std::vector<MixtureComponent> components, uint64_t seed);

  absl::Status Read(int64_t index, int batch_size, int seq_len, Batch* out) override;
  int64_t vocab_size() const override { return components_[0].source->vocab_size(); }
  int64_t num_tokens() const override;
  std::string Describe() const override;
  uint64_t tokenizer_hash() const override { return components_[0].source->tokenizer_hash(); }
  absl::Status CheckSeqLen(int seq_len) const override;  // every component

  struct Pick {
    int component;
    int64_t sample;  // the component's own sample index
  };
  // Where global sample g (= index * batch_size + b) reads from.
  Pick PickSample(int64_t g) const;
  // Slots of each component per block of kMixtureBlock samples.
  const std::vector<int64_t>& quotas() const { return quotas_; }

 private:
  MixtureSource() = default;
  std::vector<MixtureComponent> components_;
  std::vector<int64_t> quotas_;
  std::vector<int64_t> quota_begin_;  // prefix sums Q[k]
  uint64_t seed_ = 0;
  int half_bits_ = 0;
};

// Largest-remainder rounding of weights to integer quotas summing to `total`;
// error when a weight is <= 0 or rounds to zero slots.
absl::StatusOr<std::vector<int64_t>> MixtureQuotas(const std::vector<double>& weights,
                                                   int64_t total);

}  // namespace sb
