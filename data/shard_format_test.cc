// Shard header: round trip, and every way a shard can be foreign, truncated
// or inconsistent is an error that names the file.
#include "data/shard_format.h"

#include <gtest/gtest.h>

namespace sb {
namespace {

ShardHeader Sample() {
  ShardHeader h;
  h.token_bytes = 2;
  h.num_tokens = 100;
  h.vocab_size = 8192;
  h.tokenizer_hash = 0x1122334455667788ULL;
  h.num_documents = 3;
  h.eos_id = 2;
  return h;
}

int64_t SizeOf(const ShardHeader& h) { return kShardHeaderBytes + h.num_tokens * h.token_bytes; }

TEST(ShardFormatTest, HeaderRoundTrips) {
  const ShardHeader h = Sample();
  const std::string bytes = EncodeShardHeader(h);
  ASSERT_EQ(bytes.size(), static_cast<size_t>(kShardHeaderBytes));
  EXPECT_EQ(bytes.substr(0, 8), "SBTOKENS");
  auto back = DecodeShardHeader(bytes, SizeOf(h), "x.bin");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, kShardVersion);
  EXPECT_EQ(back->token_bytes, 2u);
  EXPECT_EQ(back->num_tokens, 100u);
  EXPECT_EQ(back->vocab_size, 8192u);
  EXPECT_EQ(back->tokenizer_hash, h.tokenizer_hash);
  EXPECT_EQ(back->num_documents, 3u);
  EXPECT_EQ(back->eos_id, 2);
}

TEST(ShardFormatTest, TokenWidthFollowsVocab) {
  EXPECT_EQ(TokenBytesForVocab(257), 2u);
  EXPECT_EQ(TokenBytesForVocab(65536), 2u);
  EXPECT_EQ(TokenBytesForVocab(65537), 4u);
  EXPECT_TRUE(CheckVocabFits(65536, 2).ok());
  EXPECT_FALSE(CheckVocabFits(65537, 2).ok());
  EXPECT_TRUE(CheckVocabFits(128256, 4).ok());  // Llama 3
  EXPECT_FALSE(CheckVocabFits(0, 2).ok());
}

void ExpectError(std::string bytes, int64_t size, const std::string& needle) {
  auto h = DecodeShardHeader(bytes, size, "data/x.bin");
  ASSERT_FALSE(h.ok()) << "expected an error containing '" << needle << "'";
  EXPECT_NE(h.status().message().find("data/x.bin"), std::string::npos) << h.status();
  EXPECT_NE(h.status().message().find(needle), std::string::npos) << h.status();
}

TEST(ShardFormatTest, RejectsTruncatedHeader) {
  const std::string bytes = EncodeShardHeader(Sample());
  ExpectError(bytes.substr(0, 20), 20, "truncated");
}

TEST(ShardFormatTest, RejectsForeignFile) {
  std::string bytes(64, 'x');
  ExpectError(bytes, 64 + 200, "bad magic");
}

TEST(ShardFormatTest, RejectsOtherVersion) {
  ShardHeader h = Sample();
  h.version = 2;
  ExpectError(EncodeShardHeader(h), SizeOf(h), "version 2");
}

TEST(ShardFormatTest, RejectsCorruptHeader) {
  std::string bytes = EncodeShardHeader(Sample());
  bytes[20] ^= 1;  // flip a bit of num_tokens
  ExpectError(bytes, SizeOf(Sample()), "checksum");
}

TEST(ShardFormatTest, RejectsTruncatedTokens) {
  const ShardHeader h = Sample();
  ExpectError(EncodeShardHeader(h), SizeOf(h) - 2, "size mismatch");
  ExpectError(EncodeShardHeader(h), SizeOf(h) + 2, "size mismatch");
}

TEST(ShardFormatTest, RejectsVocabThatDoesNotFitTheTokenWidth) {
  ShardHeader h = Sample();
  h.vocab_size = 70000;  // ids above 65535 cannot be u16
  ExpectError(EncodeShardHeader(h), SizeOf(h), "does not fit u16");
}

TEST(ShardFormatTest, RejectsEosOutsideVocab) {
  ShardHeader h = Sample();
  h.eos_id = 9000;
  ExpectError(EncodeShardHeader(h), SizeOf(h), "eos id");
}

TEST(ShardFormatTest, HashIsFnv1a) {
  // Reference values of 64-bit FNV-1a (Fowler/Noll/Vo test vectors).
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ULL);
  EXPECT_EQ(HashHex(0xabcULL), "0x0000000000000abc");
}

}  // namespace
}  // namespace sb
