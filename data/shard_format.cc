#include "data/shard_format.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sb {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "shards are little-endian and memory-mapped as is");

// Byte offsets of the header fields (docs/data.md has the same table).
constexpr int kVersionAt = 8, kTokenBytesAt = 12, kNumTokensAt = 16, kVocabAt = 24,
              kHashAt = 32, kDocsAt = 40, kEosAt = 48, kReservedAt = 52, kChecksumAt = 56;

template <typename T>
void Put(std::string* out, int at, T value) {
  std::memcpy(out->data() + at, &value, sizeof(T));
}
template <typename T>
T Get(std::string_view in, int at) {
  T value;
  std::memcpy(&value, in.data() + at, sizeof(T));
  return value;
}

}  // namespace

uint32_t TokenBytesForVocab(int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

absl::Status CheckVocabFits(int64_t vocab_size, uint32_t token_bytes) {
  if (token_bytes != 2 && token_bytes != 4) {
    return absl::InvalidArgumentError(absl::StrCat("token width ", token_bytes, " bytes; 2 or 4"));
  }
  const int64_t limit = token_bytes == 2 ? int64_t{1} << 16 : int64_t{1} << 31;
  if (vocab_size <= 0 || vocab_size > limit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "vocab_size %d does not fit u%d tokens (at most %d ids)", vocab_size, 8 * token_bytes,
        limit));
  }
  return absl::OkStatus();
}

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

std::string HashHex(uint64_t hash) { return absl::StrFormat("0x%016x", hash); }

absl::StatusOr<uint64_t> TokenizerFileHash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read tokenizer ", path));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return TokenizerHash(bytes);
}

std::string EncodeShardHeader(const ShardHeader& h) {
  std::string out(kShardHeaderBytes, '\0');
  std::memcpy(out.data(), kShardMagic, sizeof(kShardMagic));
  Put<uint32_t>(&out, kVersionAt, h.version);
  Put<uint32_t>(&out, kTokenBytesAt, h.token_bytes);
  Put<uint64_t>(&out, kNumTokensAt, h.num_tokens);
  Put<uint64_t>(&out, kVocabAt, h.vocab_size);
  Put<uint64_t>(&out, kHashAt, h.tokenizer_hash);
  Put<uint64_t>(&out, kDocsAt, h.num_documents);
  Put<int32_t>(&out, kEosAt, h.eos_id);
  Put<uint32_t>(&out, kReservedAt, 0);
  Put<uint64_t>(&out, kChecksumAt, Fnv1a64(std::string_view(out).substr(0, kChecksumAt)));
  return out;
}

absl::StatusOr<ShardHeader> DecodeShardHeader(std::string_view bytes, int64_t file_size,
                                              const std::string& path) {
  auto bad = [&path](const std::string& why) {
    return absl::DataLossError(absl::StrCat("token shard ", path, ": ", why));
  };
  if (file_size < kShardHeaderBytes || static_cast<int64_t>(bytes.size()) < kShardHeaderBytes) {
    return bad(absl::StrCat("truncated: ", file_size, " bytes, shorter than the ",
                            kShardHeaderBytes, "-byte header"));
  }
  if (std::memcmp(bytes.data(), kShardMagic, sizeof(kShardMagic)) != 0) {
    return bad("not a token shard (bad magic; expected \"SBTOKENS\")");
  }
  ShardHeader h;
  h.version = Get<uint32_t>(bytes, kVersionAt);
  if (h.version != kShardVersion) {
    return bad(absl::StrCat("format version ", h.version, ", this build reads version ",
                            kShardVersion, " (re-run prepare-data)"));
  }
  if (Get<uint64_t>(bytes, kChecksumAt) != Fnv1a64(bytes.substr(0, kChecksumAt)) ||
      Get<uint32_t>(bytes, kReservedAt) != 0) {
    return bad("header checksum mismatch (corrupt header)");
  }
  h.token_bytes = Get<uint32_t>(bytes, kTokenBytesAt);
  h.num_tokens = Get<uint64_t>(bytes, kNumTokensAt);
  h.vocab_size = Get<uint64_t>(bytes, kVocabAt);
  h.tokenizer_hash = Get<uint64_t>(bytes, kHashAt);
  h.num_documents = Get<uint64_t>(bytes, kDocsAt);
  h.eos_id = Get<int32_t>(bytes, kEosAt);
  if (absl::Status fits = CheckVocabFits(static_cast<int64_t>(h.vocab_size), h.token_bytes);
      !fits.ok()) {
    return bad(std::string(fits.message()));
  }
  if (h.eos_id < -1 || h.eos_id >= static_cast<int64_t>(h.vocab_size)) {
    return bad(absl::StrCat("eos id ", h.eos_id, " outside the vocab of ", h.vocab_size));
  }
  const uint64_t max_tokens = (uint64_t{1} << 62) / h.token_bytes;
  const uint64_t expected = kShardHeaderBytes + std::min(h.num_tokens, max_tokens) * h.token_bytes;
  if (h.num_tokens > max_tokens || static_cast<uint64_t>(file_size) != expected) {
    return bad(absl::StrFormat("size mismatch: header says %d tokens of %d bytes (%d bytes with "
                               "header) but the file has %d bytes (truncated or overwritten)",
                               h.num_tokens, h.token_bytes, expected, file_size));
  }
  return h;
}

}  // namespace sb
