// SentencePiece behind std types. tokenizer.cc is the only file that
// includes SentencePiece headers: they declare `namespace absl { using
// std::string_view; }`, which clashes with Debian Abseil's own
// absl::string_view class, so this header must not mention Abseil either
// (errors are returned as strings; callers wrap them in absl::Status).
// SentencePiece is linked statically (data/sentencepiece/), never Debian's
// libsentencepiece.so (it embeds protobuf-lite 3.14).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sb {

class Tokenizer {
 public:
  // Loads a SentencePiece model file (tokenizer.model, e.g. Llama's).
  // Returns nullptr and sets *error on failure.
  static std::unique_ptr<Tokenizer> Load(const std::string& path, std::string* error);
  static std::unique_ptr<Tokenizer> FromModelBytes(std::string model_bytes, std::string* error);
  ~Tokenizer();

  // The ids SentencePiece gives for the whole `text`; thread-safe.
  // SentencePiece's BPE keeps one heap over the whole input, which gets slow
  // (cache misses) for long documents: ~0.3 MB/s for an 11 MB file against
  // ~3 MB/s line by line. So when the model can never merge across "\n"
  // (byte fallback, no piece containing "\n", and the normaliser keeps "\n"
  // and the spaces around it, which loading verifies on a probe text), long
  // texts are encoded in ~4 KB segments cut before a "\n", dropping the
  // dummy-prefix tokens before each later segment's leading <0x0A>: the same ids.
  bool Encode(std::string_view text, std::vector<int32_t>* ids, std::string* error) const;
  // Encode in pieces (to spread one long document over threads):
  // Encode(text) == the concatenation over i of EncodeSegment(text,
  // bounds[i], bounds[i + 1]) with bounds = SegmentBounds(text).
  std::vector<size_t> SegmentBounds(std::string_view text) const;
  // Appends the ids of text[begin, end) to *ids; begin and end are bounds.
  bool EncodeSegment(std::string_view text, size_t begin, size_t end, std::vector<int32_t>* ids,
                     std::string* error) const;
  // One SentencePiece call on the whole text (reference for tests, benchmarks).
  bool EncodeUnsegmented(std::string_view text, std::vector<int32_t>* ids,
                         std::string* error) const;
  // Whether long texts are cut at newlines (see Encode).
  bool segments_at_newlines() const { return newline_id_ >= 0; }
  bool Decode(const std::vector<int32_t>& ids, std::string* text, std::string* error) const;

  int vocab_size() const;
  int eos_id() const;  // -1 when the model has none
  int bos_id() const;
  int unk_id() const;
  std::string IdToPiece(int id) const;
  // The serialized model as loaded; its hash identifies the tokenizer.
  const std::string& model_bytes() const { return model_bytes_; }

 private:
  Tokenizer();
  // Cuts before the first "\n" at least segment_bytes after the previous cut.
  std::vector<size_t> SegmentBounds(std::string_view text, size_t segment_bytes) const;
  void DetectNewlineSegmentation();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string model_bytes_;
  int newline_id_ = -1;  // id of <0x0A> when segmenting is exact, else -1
};

// Training a new model (BPE with byte fallback by default).
struct TokenizerTrainOptions {
  int vocab_size = 8192;
  std::string model_type = "bpe";
  bool byte_fallback = true;  // unknown characters become <0xNN> byte pieces, never <unk>
  // Share of characters that get their own piece; the rest fall back to bytes.
  double character_coverage = 0.9995;
  int num_threads = 2;
  // Training sentences longer than this (bytes) are ignored by SentencePiece.
  int max_sentence_length = 8192;
};

// Trains on `sentences` (each one training sentence, usually a line) with
// Llama's conventions: unk 0, bos 1, eos 2, no pad, identity normalisation,
// whitespace kept as is, digits split. Returns false and sets *error on failure.
bool TrainTokenizer(const std::vector<std::string>& sentences,
                    const TokenizerTrainOptions& options, std::string* model_bytes,
                    std::string* error);

}  // namespace sb
