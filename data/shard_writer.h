// Writes one token stream into numbered shards dir/shard_00000.bin, ... of
// at most `max_tokens_per_shard` tokens each (data/shard_format.h). A
// document may straddle two shards: the loader reads all shards of a
// directory as one stream. Each shard's header is finalised (token and
// document counts) and the file fsync'ed when it is closed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "data/shard_format.h"

namespace sb {

class ShardWriter {
 public:
  // `header` gives token_bytes, vocab_size, tokenizer_hash and eos_id; the
  // counts are filled in per shard.
  ShardWriter(std::string dir, const ShardHeader& header, int64_t max_tokens_per_shard);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends one document's tokens (its EOS included). Ids must be < vocab.
  absl::Status AppendDocument(const std::vector<int32_t>& tokens);
  // Finalises the open shard. No shard is written for an empty stream.
  absl::Status Close();

  int64_t num_tokens() const { return total_tokens_; }
  int64_t num_documents() const {
    return total_documents_ + (file_ != nullptr ? static_cast<int64_t>(current_.num_documents) : 0);
  }
  int num_shards() const { return num_shards_; }

  static std::string ShardName(int index);  // "shard_00042.bin"

 private:
  absl::Status OpenNextShard();
  absl::Status FinishShard();

  std::string dir_;
  ShardHeader header_;
  int64_t max_tokens_per_shard_;
  std::FILE* file_ = nullptr;
  std::string path_;
  ShardHeader current_;  // counts of the open shard
  std::vector<char> buffer_;
  int num_shards_ = 0;
  int64_t total_tokens_ = 0;
  int64_t total_documents_ = 0;
};

}  // namespace sb
