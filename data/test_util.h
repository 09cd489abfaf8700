// Helpers shared by the data/ tests: scratch directories, files, synthetic
// shard datasets, and running outside programs (spm_train, spm_encode).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sb::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& bytes);
std::string ReadFile(const std::string& path);

// Writes `tokens` as one stream into shards of `shard_tokens` tokens under
// dir (created), u16 or u32 by vocab, with the given tokenizer hash and EOS.
void WriteShards(const std::string& dir, const std::vector<int32_t>& tokens, int64_t vocab_size,
                 int64_t shard_tokens, uint64_t tokenizer_hash, int32_t eos_id = -1);

// A pseudo-random token stream of length n with ids < vocab.
std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab_size, uint64_t seed);

// Runs a shell command; returns its exit status and fills *output with its
// stdout+stderr.
int Run(const std::string& command, std::string* output);

// A loadable SentencePiece WORD model written with a hand-rolled protobuf
// encoder: <unk>, <s>, [</s>,] then "\u2581w<i>" pieces up to num_pieces.
// For vocabularies too large to train quickly (u16 overflow) and for a model
// without EOS.
std::string HandBuiltModel(int num_pieces, bool with_eos);

// Directory of the python3.11-doc reStructuredText sources (the default corpus).
std::string PythonDocSources();

}  // namespace sb::testing
