#include "data/test_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/shard_format.h"
#include "data/shard_writer.h"
#include "moe/core/rng.h"

namespace sb::testing {

ScratchDir::ScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/sb_data_test.XXXXXX";
  char* made = ::mkdtemp(pattern.data());
  EXPECT_NE(made, nullptr) << "mkdtemp " << pattern;
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteShards(const std::string& dir, const std::vector<int32_t>& tokens, int64_t vocab_size,
                 int64_t shard_tokens, uint64_t tokenizer_hash, int32_t eos_id) {
  std::filesystem::create_directories(dir);
  ShardHeader header;
  header.token_bytes = TokenBytesForVocab(vocab_size);
  header.vocab_size = static_cast<uint64_t>(vocab_size);
  header.tokenizer_hash = tokenizer_hash;
  header.eos_id = eos_id;
  ShardWriter writer(dir, header, shard_tokens);
  ASSERT_TRUE(writer.AppendDocument(tokens).ok());
  ASSERT_TRUE(writer.Close().ok());
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab_size, uint64_t seed) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  const uint64_t key = StreamKey({seed, 0x70c3ULL});
  for (int64_t i = 0; i < n; ++i) {
    tokens[static_cast<size_t>(i)] = static_cast<int32_t>(Mix64(key ^ Mix64(i)) % vocab_size);
  }
  return tokens;
}

int Run(const std::string& command, std::string* output) {
  output->clear();
  std::FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output->append(buffer, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {
void Varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void Field(std::string* out, int number, uint64_t v) {  // wire type 0
  Varint(out, static_cast<uint64_t>(number) << 3);
  Varint(out, v);
}
void Bytes(std::string* out, int number, const std::string& bytes) {  // wire type 2
  Varint(out, (static_cast<uint64_t>(number) << 3) | 2);
  Varint(out, bytes.size());
  out->append(bytes);
}
}  // namespace

std::string HandBuiltModel(int num_pieces, bool with_eos) {
  // Field numbers from sentencepiece_model.proto (0.1.97).
  enum { kNormal = 1, kUnknown = 2, kControl = 3 };
  std::string model;
  auto piece = [&model](const std::string& text, float score, int type) {
    std::string p;
    Bytes(&p, 1, text);
    Varint(&p, (2 << 3) | 5);  // score: fixed32 float
    char f[4];
    std::memcpy(f, &score, 4);
    p.append(f, 4);
    Field(&p, 3, static_cast<uint64_t>(type));
    Bytes(&model, 1, p);
  };
  piece("<unk>", 0, kUnknown);
  piece("<s>", 0, kControl);
  if (with_eos) piece("</s>", 0, kControl);
  for (int i = with_eos ? 3 : 2; i < num_pieces; ++i) {
    piece("\xE2\x96\x81w" + std::to_string(i), -static_cast<float>(i), kNormal);
  }
  std::string trainer;
  Field(&trainer, 3, 3);  // model_type: WORD
  Field(&trainer, 4, static_cast<uint64_t>(num_pieces));
  Bytes(&model, 2, trainer);
  std::string normalizer;
  Bytes(&normalizer, 1, "identity");
  Bytes(&model, 3, normalizer);
  return model;
}

std::string PythonDocSources() { return "/usr/share/doc/python3.11/html/_sources"; }

}  // namespace sb::testing
