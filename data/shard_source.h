// BatchSource over prepared token shards (data/shard_format.h). All shards
// of a directory, in sorted file-name order, form one token stream; sample i
// is the window of seq_len + 1 tokens that WindowSampler assigns to i, so a
// batch is a pure function of its global index (resume, layouts, ranks: see
// data/batch_source.h). Windows may straddle shard boundaries.
//
// Opening validates every header (magic, version, checksum, size) and that
// all shards agree on vocab, EOS and tokenizer hash, and that this hash
// matches the dataset's tokenizer.model (in the directory or its parent) and
// the tokenizer the config expects, if any. Reads check ids < vocab_size.
// Not thread-safe (Read reuses a scratch window): one reader per object.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/batch_source.h"
#include "data/mapped_file.h"
#include "data/shard_format.h"
#include "data/window_sampler.h"

namespace sb {

struct ShardSourceOptions {
  uint64_t seed = 0;
  // When nonzero, every shard must carry this tokenizer hash ...
  uint64_t expected_tokenizer_hash = 0;
  // ... which came from here (named in the error), e.g. data.tokenizer_path.
  std::string expected_tokenizer_origin;
};

class ShardSource : public BatchSource {
 public:
  // path: a directory of *.bin shards, or one shard file.
  static absl::StatusOr<std::unique_ptr<ShardSource>> Open(const std::string& path,
                                                           const ShardSourceOptions& options);

  absl::Status Read(int64_t index, int batch_size, int seq_len, Batch* out) override;
  int64_t vocab_size() const override { return static_cast<int64_t>(header_.vocab_size); }
  int64_t num_tokens() const override { return num_tokens_; }
  std::string Describe() const override;
  double UnigramEntropy() const override;

  // Writes the window of sample `sample_index` (counting across epochs):
  // inputs[t] = window[t], targets[t] = window[t + 1], t < seq_len.
  absl::Status ReadSample(int64_t sample_index, int seq_len, int32_t* inputs, int32_t* targets);
  // Windows per epoch at this seq_len.
  int64_t NumWindows(int seq_len) const;

  uint64_t tokenizer_hash() const override { return header_.tokenizer_hash; }
  int32_t eos_id() const { return header_.eos_id; }
  int64_t num_documents() const { return num_documents_; }
  int num_shards() const { return static_cast<int>(shards_.size()); }
  const std::string& path() const { return path_; }
  // Copies tokens [begin, begin + count) of the stream (tests, tools).
  absl::Status CopyTokens(int64_t begin, int64_t count, int32_t* out) const;

 private:
  struct Shard {
    std::unique_ptr<MappedFile> file;
    int64_t first_token = 0;  // position of its first token in the stream
    int64_t num_tokens = 0;
  };
  ShardSource() = default;
  const WindowSampler& SamplerFor(int seq_len);

  std::string path_;
  uint64_t seed_ = 0;
  ShardHeader header_;  // of the first shard; all agree
  std::vector<Shard> shards_;
  int64_t num_tokens_ = 0;
  int64_t num_documents_ = 0;
  std::unique_ptr<WindowSampler> sampler_;  // rebuilt when seq_len changes
  int sampler_seq_len_ = 0;
  std::vector<int32_t> window_;  // [seq_len + 1] scratch of ReadSample
};

// Shards under `path` (a directory: its *.bin files sorted; a file: itself).
absl::StatusOr<std::vector<std::string>> ListShardFiles(const std::string& path);
// True when `path` is a shard file or a directory holding *.bin files.
bool LooksLikeShardPath(const std::string& path);

}  // namespace sb
