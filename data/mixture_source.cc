#include "data/mixture_source.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/window_sampler.h"
#include "moe/core/rng.h"

namespace sb {

absl::StatusOr<std::vector<int64_t>> MixtureQuotas(const std::vector<double>& weights,
                                                   int64_t total) {
  double sum = 0;
  for (size_t k = 0; k < weights.size(); ++k) {
    if (!(weights[k] > 0) || !std::isfinite(weights[k])) {
      return absl::InvalidArgumentError(
          absl::StrCat("mixture component ", k, " has weight ", weights[k], "; weights are > 0"));
    }
    sum += weights[k];
  }
  std::vector<int64_t> quotas(weights.size());
  std::vector<std::pair<double, size_t>> remainders;
  int64_t assigned = 0;
  for (size_t k = 0; k < weights.size(); ++k) {
    const double exact = weights[k] / sum * static_cast<double>(total);
    quotas[k] = static_cast<int64_t>(std::floor(exact));
    assigned += quotas[k];
    remainders.push_back({exact - static_cast<double>(quotas[k]), k});
  }
  // Larger remainder first; ties go to the earlier component.
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t r = 0; assigned < total; ++r, ++assigned) ++quotas[remainders[r].second];
  for (size_t k = 0; k < quotas.size(); ++k) {
    if (quotas[k] == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "mixture component %d: weight %g is below 1/%d of the total %g and would never be "
          "sampled",
          k, weights[k], total, sum));
    }
  }
  return quotas;
}

absl::StatusOr<std::unique_ptr<MixtureSource>> MixtureSource::Create(
    std::vector<MixtureComponent> components, uint64_t seed) {
  if (components.empty()) return absl::InvalidArgumentError("mixture has no components");
  std::vector<double> weights;
  for (const MixtureComponent& c : components) {
    const ShardSource& first = *components[0].source;
    if (c.source->tokenizer_hash() != first.tokenizer_hash()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "mixture components ", first.path(), " (tokenizer ", HashHex(first.tokenizer_hash()),
          ") and ", c.source->path(), " (tokenizer ", HashHex(c.source->tokenizer_hash()),
          ") use different tokenizers; prepare both with the same --tokenizer"));
    }
    weights.push_back(c.weight);
  }
  auto quotas = MixtureQuotas(weights, kMixtureBlock);
  if (!quotas.ok()) return quotas.status();
  auto mix = std::unique_ptr<MixtureSource>(new MixtureSource());
  mix->components_ = std::move(components);
  mix->quotas_ = *quotas;
  mix->quota_begin_.resize(mix->quotas_.size());
  std::exclusive_scan(mix->quotas_.begin(), mix->quotas_.end(), mix->quota_begin_.begin(),
                      int64_t{0});
  mix->seed_ = seed;
  mix->half_bits_ = FeistelHalfBits(kMixtureBlock);
  return mix;
}

MixtureSource::Pick MixtureSource::PickSample(int64_t g) const {
  const int64_t block = g / kMixtureBlock;
  const uint64_t key = StreamKey({seed_, static_cast<uint64_t>(block), 0x3e1c7a2ULL});
  const int64_t p = FeistelPermute(key, kMixtureBlock, half_bits_, g % kMixtureBlock);
  const int k = static_cast<int>(
      std::upper_bound(quota_begin_.begin(), quota_begin_.end(), p) - quota_begin_.begin() - 1);
  return {k, block * quotas_[k] + (p - quota_begin_[k])};
}

absl::Status MixtureSource::Read(int64_t index, int batch_size, int seq_len, Batch* out) {
  if (absl::Status s = PrepareBatch(index, batch_size, seq_len, out); !s.ok()) return s;
  int32_t* in = out->inputs.data<int32_t>();
  int32_t* tg = out->targets.data<int32_t>();
  for (int b = 0; b < batch_size; ++b) {
    const Pick pick = PickSample(index * batch_size + b);
    const int64_t offset = int64_t{b} * seq_len;
    if (absl::Status s = components_[pick.component].source->ReadSample(
            pick.sample, seq_len, in + offset, tg + offset);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

int64_t MixtureSource::num_tokens() const {
  int64_t total = 0;
  for (const MixtureComponent& c : components_) total += c.source->num_tokens();
  return total;
}

absl::Status MixtureSource::CheckSeqLen(int seq_len) const {
  for (const MixtureComponent& c : components_)
    if (absl::Status s = c.source->CheckSeqLen(seq_len); !s.ok()) return s;
  return absl::OkStatus();
}

std::string MixtureSource::Describe() const {
  std::string out = "mixture of";
  for (size_t k = 0; k < components_.size(); ++k) {
    absl::StrAppendFormat(&out, "%s %.1f%% [%s]", k ? ";" : "",
                          100.0 * quotas_[k] / kMixtureBlock, components_[k].source->Describe());
  }
  return out;
}

}  // namespace sb
