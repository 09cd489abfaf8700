// Bad safetensors files: every rule of docs/formats.md broken on purpose,
// each giving an error that names the file (and the tensor), never a crash;
// plus every truncation and many random corruptions of a valid file.
#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moe/core/rng.h"
#include "moe/io/safetensors.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

using ::testing::HasSubstr;

// The 8-byte little-endian length, the header text, then `data_bytes` bytes.
std::string MakeFile(const std::string& header, size_t data_bytes = 0) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(uint64_t{header.size()} >> (8 * i));
  return out + header + std::string(data_bytes, '\x01');
}

std::string WithLength(uint64_t n, const std::string& rest) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + rest;
}

class Reject : public ::testing::Test {
 protected:
  // Writes `bytes`, opens it, and checks the error mentions the path and each part.
  void ExpectRejected(const std::string& bytes, std::vector<std::string> parts) {
    const std::string path = dir_.Path("bad.safetensors");
    testing::WriteBytes(path, bytes);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok()) << "accepted: " << bytes.substr(8);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
    const std::string message(f.status().message());
    EXPECT_THAT(message, HasSubstr(path));
    for (const std::string& part : parts) EXPECT_THAT(message, HasSubstr(part));
  }
  void ExpectAccepted(const std::string& bytes) {
    const std::string path = dir_.Path("ok.safetensors");
    testing::WriteBytes(path, bytes);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
    EXPECT_TRUE(f.ok()) << f.status();
  }
  testing::TempDir dir_;
};

// A header with one tensor "w" (F32) of the given shape and offsets.
std::string One(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return "{\"w\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets +
         "}}";
}

TEST_F(Reject, ShortFilesAndBadHeaderLengths) {
  ExpectRejected("", {"0 bytes, shorter than the 8-byte header length"});
  ExpectRejected(std::string("\x02\0\0\0\0\0\0", 7), {"7 bytes"});
  ExpectRejected(WithLength(100, "{}"), {"header length 100 runs past the end of the file"});
  ExpectRejected(WithLength(uint64_t{1} << 63, "{}"), {"exceeds the limit"});
  ExpectRejected(WithLength(~uint64_t{0}, "{}"), {"exceeds the limit"});
  ExpectRejected(WithLength(0, ""), {"not valid UTF-8 JSON"});
}

TEST_F(Reject, GarbledJson) {
  ExpectRejected(MakeFile("{\"w\": {"), {"not valid UTF-8 JSON"});
  ExpectRejected(MakeFile("{\"w\" 1}"), {"not valid UTF-8 JSON"});
  ExpectRejected(MakeFile("{\"\xff\": 1}"), {"not valid UTF-8 JSON"});  // bad UTF-8
  // nlohmann alone would stop at the NUL and accept "{}".
  ExpectRejected(MakeFile(std::string("{}\0{\"x\": 1}", 11)), {"NUL byte at offset 2"});
  ExpectRejected(MakeFile("[1, 2]"), {"not a JSON object"});
  ExpectRejected(MakeFile("\"w\""), {"not a JSON object"});
  ExpectRejected(MakeFile(std::string(100000, '[') + std::string(100000, ']')),
                 {"not a JSON object"});  // deep nesting: no stack overflow
  ExpectRejected(MakeFile("{\"w\":" + std::string(100000, '[') + std::string(100000, ']') + "}"),
                 {"'w'", "not a JSON object"});
}

TEST_F(Reject, EntriesThatAreNotTensors) {
  ExpectRejected(MakeFile("{\"w\": 5}"), {"tensor 'w'", "not a JSON object"});
  ExpectRejected(MakeFile("{\"w\": {\"shape\": [], \"data_offsets\": [0, 4]}}"),
                 {"'w'", "missing 'dtype'"});
  ExpectRejected(MakeFile("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4),
                 {"'w'", "missing 'shape'"});
  ExpectRejected(MakeFile("{\"w\": {\"dtype\": \"F32\", \"shape\": []}}", 4),
                 {"'w'", "missing 'data_offsets'"});
  ExpectRejected(
      MakeFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],\"x\":1}}", 4),
      {"'w'", "unknown field 'x'"});
}

TEST_F(Reject, DTypes) {
  for (const char* bad : {"\"U8\"", "\"BOOL\"", "\"F8_E4M3\"", "\"f32\"", "\"F32 \"", "\"\""}) {
    ExpectRejected(MakeFile(One(bad, "[1]", "[0, 4]"), 4),
                   {"tensor 'w'", std::string("unsupported dtype '") +
                                      std::string(bad + 1, std::strlen(bad) - 2) + "'"});
  }
  ExpectRejected(MakeFile(One("5", "[1]", "[0, 4]"), 4), {"'w'", "'dtype' is not a string"});
  ExpectRejected(MakeFile(One("null", "[1]", "[0, 4]"), 4), {"'w'", "'dtype' is not a string"});
}

TEST_F(Reject, Shapes) {
  ExpectRejected(MakeFile(One("\"F32\"", "[-1]", "[0, 4]"), 4), {"'w'", "shape entry -1"});
  ExpectRejected(MakeFile(One("\"F32\"", "[2.5]", "[0, 4]"), 4), {"'w'", "shape entry 2.5"});
  ExpectRejected(MakeFile(One("\"F32\"", "[1.0]", "[0, 4]"), 4), {"'w'", "shape entry"});
  ExpectRejected(MakeFile(One("\"F32\"", "[\"2\"]", "[0, 4]"), 4), {"'w'", "shape entry string"});
  ExpectRejected(MakeFile(One("\"F32\"", "[1e30]", "[0, 4]"), 4), {"'w'", "shape entry"});
  ExpectRejected(MakeFile(One("\"F32\"", "[18446744073709551615]", "[0, 4]"), 4),
                 {"'w'", "not an integer in [0, 2^63)"});
  ExpectRejected(MakeFile(One("\"F32\"", "[9223372036854775808]", "[0, 4]"), 4), {"'w'"});
  ExpectRejected(MakeFile(One("\"F32\"", "[4294967296, 4294967296]", "[0, 4]"), 4),
                 {"'w'", "more elements than a 64-bit size can hold"});
  ExpectRejected(MakeFile(One("\"F64\"", "[2305843009213693952]", "[0, 8]"), 8),
                 {"'w'", "more elements"});  // numel fits, bytes do not
  ExpectRejected(MakeFile(One("\"F32\"", "4", "[0, 16]"), 16), {"'w'", "'shape' is not an array"});
  // An overflowing product times zero is simply empty.
  ExpectAccepted(MakeFile(One("\"F32\"", "[4294967296, 4294967296, 0]", "[0, 0]")));
}

TEST_F(Reject, DataOffsets) {
  auto bad = [&](const std::string& offsets, const std::string& part) {
    ExpectRejected(MakeFile(One("\"F32\"", "[2]", offsets), 8), {"tensor 'w'", part});
  };
  bad("[0]", "not an array of two integers");
  bad("[0, 4, 8]", "not an array of two integers");
  bad("{\"a\": 0}", "not an array of two integers");
  bad("[-1, 7]", "must be integers");
  bad("[0, 8.0]", "must be integers");
  bad("[\"0\", 8]", "must be integers");
  bad("[0, 18446744073709551615]", "must be integers");
  bad("[8, 0]", "begin is after end");
  bad("[4, 12]", "run past the data section (8 bytes)");
  bad("[0, 9]", "run past the data section");
  bad("[0, 4]", "holds 4 bytes but F32 shape [2] needs 8");
  bad("[0, 0]", "holds 0 bytes");
}

TEST_F(Reject, OverlapsAndDuplicates) {
  const std::string a = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":";
  const std::string b = "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":";
  ExpectRejected(MakeFile("{" + a + "[0,8]}," + b + "[4,12]}}", 12),
                 {"tensor 'b'", "overlap tensor 'a'"});
  ExpectRejected(MakeFile("{" + a + "[4,12]}," + b + "[0,8]}}", 12), {"overlap"});
  ExpectRejected(MakeFile("{" + a + "[0,8]}," + b + "[0,8]}}", 8), {"overlap"});
  ExpectRejected(MakeFile("{" + a + "[0,8]}," + a + "[8,16]}}", 16), {"'a' appears twice"});
  ExpectRejected(MakeFile("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[0,8]}}",
                          8),
                 {"'dtype' appears twice"});
  // Adjacent ranges, gaps, and empty tensors anywhere are fine.
  ExpectAccepted(MakeFile("{" + a + "[0,8]}," + b + "[8,16]}}", 16));
  ExpectAccepted(MakeFile("{" + a + "[8,16]}," + b + "[24,32]}}", 40));
  ExpectAccepted(MakeFile("{" + a +
                              "[0,8]},\"e\":{\"dtype\":\"F32\",\"shape\":[0],"
                              "\"data_offsets\":[4,4]}}",
                          8));
}

TEST_F(Reject, Metadata) {
  ExpectRejected(MakeFile("{\"__metadata__\": [1]}"), {"'__metadata__' is not a JSON object"});
  ExpectRejected(MakeFile("{\"__metadata__\": {\"step\": 3}}"),
                 {"'__metadata__' value of 'step' is not a string"});
  ExpectRejected(MakeFile("{\"__metadata__\": {\"a\": \"1\", \"a\": \"2\"}}"), {"appears twice"});
  ExpectAccepted(MakeFile("{\"__metadata__\": {\"a\": \"1\"}}"));
  ExpectAccepted(MakeFile("{}   "));  // HF pads headers with spaces
}

TEST_F(Reject, LongNamesAreTrimmedInMessages) {
  const std::string name(5000, 'n');
  const std::string path = dir_.Path("long.safetensors");
  testing::WriteBytes(path, MakeFile("{\"" + name + "\": 1}"));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_LT(f.status().message().size(), 400u);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("(5000 bytes)"));
}

// A valid file with a few tensors, written by our writer.
std::string ValidFile(const testing::TempDir& dir) {
  const std::string path = dir.Path("valid.safetensors");
  const absl::Status s = WriteSafetensors(
      path,
      {{"model.embed_tokens.weight", Tensor::FromVector<float>({1, 2, 3, 4, 5, 6}, {3, 2})},
       {"ids", Tensor::FromVector<int64_t>({7, 8}, {2})},
       {"norm", Tensor::FromVector<double>({0.5}, {1})}},
      {{"format", "pt"}});
  EXPECT_TRUE(s.ok()) << s;
  return testing::ReadBytes(path);
}

// In memory (the parser SafetensorsFile::Open runs on its mapping): fast
// enough for thousands of variants. Returns the status; on success also
// decodes every tensor, which must then succeed.
absl::Status ParseAndDecode(const std::string& bytes) {
  const auto* image = reinterpret_cast<const uint8_t*>(bytes.data());
  absl::StatusOr<SafetensorsHeader> h = ParseSafetensorsHeader("mem", image, bytes.size());
  if (!h.ok()) return h.status();
  for (const SafetensorsTensorInfo& t : h->tensors) {
    const DType dtype = IsFloat(t.dtype)                    ? DType::kF64
                        : t.dtype == SafetensorsDType::kI32 ? DType::kI32
                                                            : DType::kI64;
    const absl::Status s = DecodeSafetensorsTensor("mem", t, image + h->data_start + t.begin,
                                                   Tensor::Empty(t.shape, dtype));
    EXPECT_TRUE(s.ok()) << s;
  }
  return absl::OkStatus();
}

TEST_F(Reject, EveryTruncationIsAnError) {
  const std::string valid = ValidFile(dir_);
  for (size_t n = 0; n < valid.size(); ++n) {
    const absl::Status s = ParseAndDecode(valid.substr(0, n));
    EXPECT_FALSE(s.ok()) << "prefix of " << n << " bytes accepted";
    EXPECT_THAT(std::string(s.message()), HasSubstr("mem: "));
  }
  EXPECT_TRUE(ParseAndDecode(valid).ok());
  // And through a real file, cut inside the length, the header and the data.
  for (size_t n : {size_t{3}, valid.size() / 2, valid.size() - 1})
    ExpectRejected(valid.substr(0, n), {});
  ExpectAccepted(valid);
}

TEST_F(Reject, RandomCorruptionsNeverCrash) {
  // Each variant flips 1-3 bytes; accepted variants must still decode.
  const std::string valid = ValidFile(dir_);
  int rejected = 0;
  for (uint64_t trial = 0; trial < 20000; ++trial) {
    std::string bytes = valid;
    const uint64_t key = StreamKey({trial, 5});
    const int flips = 1 + static_cast<int>(Mix64(key) % 3);
    for (int i = 0; i < flips; ++i) {
      const uint64_t r = Mix64(key + 1 + i);
      // Mostly the length and header, where the parser lives.
      const size_t limit = r % 4 ? std::min<size_t>(bytes.size(), 200) : bytes.size();
      bytes[(r >> 8) % limit] ^= static_cast<char>(1 + (r >> 32) % 255);
    }
    const absl::Status s = ParseAndDecode(bytes);
    if (!s.ok()) {
      ++rejected;
      EXPECT_THAT(std::string(s.message()), HasSubstr("mem: "));
    }
  }
  EXPECT_GT(rejected, 10000);  // the corruption really hits the header
}

}  // namespace
}  // namespace sb
