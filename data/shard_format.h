// Token shard file format (docs/data.md, "Shard format"): a 64-byte
// little-endian header, then `num_tokens` token ids of `token_bytes` bytes
// each (u16 when the vocab fits in 16 bits, else u32). Every shard of a
// dataset carries the hash of the tokenizer that wrote it, so a loader can
// refuse shards from another tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sb {

inline constexpr char kShardMagic[8] = {'S', 'B', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr uint32_t kShardVersion = 1;
constexpr int64_t kShardHeaderBytes = 64;

struct ShardHeader {
  uint32_t version = kShardVersion;
  uint32_t token_bytes = 2;     // 2 (u16) or 4 (u32)
  uint64_t num_tokens = 0;
  uint64_t vocab_size = 0;      // every token id is < vocab_size
  uint64_t tokenizer_hash = 0;  // TokenizerHash of the tokenizer.model bytes
  uint64_t num_documents = 0;   // EOS tokens in this shard
  int32_t eos_id = -1;          // -1: none
};

// Smallest token width for ids < vocab_size: 2 up to 65536, else 4.
uint32_t TokenBytesForVocab(int64_t vocab_size);
// Error unless every id < vocab_size fits in token_bytes (2 or 4).
absl::Status CheckVocabFits(int64_t vocab_size, uint32_t token_bytes);

// The 64 header bytes (magic, fields, checksum of the first 56 bytes).
std::string EncodeShardHeader(const ShardHeader& header);
// Parses and validates a header against the file size: magic, version,
// checksum, token width vs vocab, and size == 64 + num_tokens * token_bytes.
// Errors name `path`.
absl::StatusOr<ShardHeader> DecodeShardHeader(std::string_view bytes, int64_t file_size,
                                              const std::string& path);

// FNV-1a 64-bit hash: the identity of a tokenizer is the hash of its
// tokenizer.model bytes (not cryptographic; it catches mix-ups, not attacks).
uint64_t Fnv1a64(std::string_view bytes);
inline uint64_t TokenizerHash(std::string_view model_bytes) { return Fnv1a64(model_bytes); }
absl::StatusOr<uint64_t> TokenizerFileHash(const std::string& path);
// "0x1234abcd5678ef90"
std::string HashHex(uint64_t hash);

}  // namespace sb
