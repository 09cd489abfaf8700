// Byte-level text source: files read as UTF-8 bytes, token = byte value
// (0..255), token 256 = end of document after each file. Vocab 257. Serves
// the foundation's tests and runs without a tokenizer; token shards
// (data/shard_source.h) are the production path.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/batch_source.h"
#include "data/window_sampler.h"

namespace sb {

constexpr int64_t kByteVocabSize = 257;
constexpr int32_t kByteEos = 256;

class ByteTextSource : public BatchSource {
 public:
  // path: a text file or a directory (all regular files below it, sorted by
  // path). Fails on missing or empty input and on a file holding a NUL byte
  // (binary, not text).
  static absl::StatusOr<std::unique_ptr<ByteTextSource>> Open(const std::string& path,
                                                              uint64_t seed);
  absl::Status Read(int64_t index, int batch_size, int seq_len, Batch* out) override;
  int64_t vocab_size() const override { return kByteVocabSize; }
  int64_t num_tokens() const override { return static_cast<int64_t>(tokens_.size()); }
  std::string Describe() const override;
  double UnigramEntropy() const override;
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  std::vector<int32_t> tokens_;
  int num_files_ = 0;
  uint64_t seed_ = 0;
  std::unique_ptr<WindowSampler> sampler_;  // rebuilt when seq_len changes
};

// Regular files under `path` (or `path` itself), sorted; error when none.
absl::StatusOr<std::vector<std::string>> ListInputFiles(const std::string& path);

}  // namespace sb
