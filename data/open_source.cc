// Which BatchSource a path or a DataConfig opens (docs/data.md, "Loading"):
// a shard file, or a directory holding *.bin shards -> ShardSource; a
// prepared dataset root (tokenizer.model + train/) -> error naming its
// train/ and val/; anything else -> byte-level text (ByteTextSource).
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/batch_source.h"
#include "data/byte_text_source.h"
#include "data/mixture_source.h"
#include "data/open_source.h"
#include "data/shard_source.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

bool IsPreparedDatasetRoot(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_regular_file(dir / "tokenizer.model", ec) &&
         fs::is_directory(dir / "train", ec);
}

absl::StatusOr<std::unique_ptr<BatchSource>> OpenPath(const std::string& path,
                                                      const ShardSourceOptions& options,
                                                      const char* field) {
  std::error_code ec;
  if (IsPreparedDatasetRoot(path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " = ", path, " is a prepared dataset; point it at ", path, "/train or ", path,
        "/val"));
  }
  // info.json or tokenizer.model of a prepared dataset: not text to train on.
  const fs::path parent = fs::path(path).parent_path();
  if (fs::is_regular_file(path, ec) && !parent.empty() && IsPreparedDatasetRoot(parent)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " = ", path, " is a file of the prepared dataset ", parent.string(),
        ", not its tokens; point it at ", (parent / "train").string(), " or ",
        (parent / "val").string()));
  }
  if (LooksLikeShardPath(path)) {
    auto source = ShardSource::Open(path, options);
    if (!source.ok()) return source.status();
    return std::unique_ptr<BatchSource>(std::move(*source));
  }
  if (options.expected_tokenizer_hash != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " = ", path, " holds no token shards, but data.tokenizer_path asks for tokens of ",
        options.expected_tokenizer_origin, " (run switchboard prepare-data)"));
  }
  auto source = ByteTextSource::Open(path, options.seed);
  if (!source.ok()) return source.status();
  return std::unique_ptr<BatchSource>(std::move(*source));
}

absl::StatusOr<ShardSourceOptions> OptionsFor(const switchboard::DataConfig& data, uint64_t seed) {
  ShardSourceOptions options;
  options.seed = seed;
  if (!data.tokenizer_path().empty()) {
    auto hash = TokenizerFileHash(data.tokenizer_path());
    if (!hash.ok()) {
      return absl::NotFoundError(absl::StrCat("data.tokenizer_path: ", hash.status().message()));
    }
    options.expected_tokenizer_hash = *hash;
    options.expected_tokenizer_origin = absl::StrCat("data.tokenizer_path ", data.tokenizer_path());
  }
  return options;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatchSource(const std::string& path,
                                                             uint64_t seed) {
  ShardSourceOptions options;
  options.seed = seed;
  return OpenPath(path, options, "data path");
}

absl::StatusOr<std::unique_ptr<BatchSource>> OpenTrainSource(
    const switchboard::DataConfig& data, uint64_t seed) {
  auto options = OptionsFor(data, seed);
  if (!options.ok()) return options.status();
  if (data.train_mixture_size() == 0) {
    if (data.train_path().empty()) {
      return absl::InvalidArgumentError("data.train_path or data.train_mixture is required");
    }
    return OpenPath(data.train_path(), *options, "data.train_path");
  }
  if (!data.train_path().empty()) {
    return absl::InvalidArgumentError(
        "data.train_path and data.train_mixture are exclusive; set one");
  }
  std::vector<MixtureComponent> components;
  for (int k = 0; k < data.train_mixture_size(); ++k) {
    const auto& spec = data.train_mixture(k);
    auto source = ShardSource::Open(spec.path(), *options);
    if (!source.ok()) {
      return absl::Status(source.status().code(),
                          absl::StrCat("data.train_mixture[", k, "]: ", source.status().message()));
    }
    components.push_back({std::move(*source), spec.weight()});
  }
  auto mixture = MixtureSource::Create(std::move(components), seed);
  if (!mixture.ok()) {
    return absl::Status(mixture.status().code(),
                        absl::StrCat("data.train_mixture: ", mixture.status().message()));
  }
  return std::unique_ptr<BatchSource>(std::move(*mixture));
}

absl::StatusOr<std::unique_ptr<BatchSource>> OpenValSource(const switchboard::DataConfig& data,
                                                           uint64_t seed) {
  if (data.val_path().empty()) return absl::InvalidArgumentError("data.val_path is empty");
  auto options = OptionsFor(data, seed);
  if (!options.ok()) return options.status();
  return OpenPath(data.val_path(), *options, "data.val_path");
}

}  // namespace sb

namespace sb {

double BatchSource::UnigramEntropy() const { return std::nan(""); }

absl::Status BatchSource::CheckSeqLen(int seq_len) const {
  if (num_tokens() > seq_len) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: %d tokens, fewer than one sample of train.seq_len + 1 = %d tokens", Describe(),
      num_tokens(), int64_t{seq_len} + 1));
}

absl::Status PrepareBatch(int64_t index, int batch_size, int seq_len, Batch* out) {
  if (index < 0 || batch_size <= 0 || seq_len <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad read: index %d, batch_size %d, seq_len %d", index, batch_size, seq_len));
  }
  if (!out->inputs.defined() || out->inputs.shape() != Shape{batch_size, seq_len}) {
    out->inputs = Tensor::Empty({batch_size, seq_len}, DType::kI32);
    out->targets = Tensor::Empty({batch_size, seq_len}, DType::kI32);
  }
  return absl::OkStatus();
}

double EntropyOfCounts(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  double h = 0;
  for (int64_t c : counts) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) / total;
    h -= p * std::log(p);
  }
  return h;
}

}  // namespace sb
