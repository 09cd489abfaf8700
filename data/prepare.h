// prepare-data's core (launch/prepare_data_command.cc is the CLI): reads a
// corpus (data/corpus.h), trains a SentencePiece BPE model or takes a given
// one unchanged, encodes every document followed by EOS on all cores, and
// writes DIR/{tokenizer.model, info.json, train/*.bin, val/*.bin}. Documents
// go to val/ by a seeded, evenly spaced selection (IsValidationDocument).
// Output is staged and renamed at the end (data/staged_dir.h): on any error
// nothing appears at DIR. Layout and format: docs/data.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/corpus.h"

namespace sb {

struct PrepareOptions {
  std::vector<std::string> inputs;      // files and directories
  std::string out_dir;
  std::string tokenizer_path;           // use this tokenizer.model unchanged, or
  int64_t vocab_size = 0;               // train a BPE model with this many pieces
  std::vector<std::string> tokenizer_inputs;  // training text; empty: `inputs`
  int64_t tokenizer_sample_lines = 200000;    // lines sampled to train the tokenizer
  double val_fraction = 0.01;           // share of documents in val/ (0: no val/)
  uint64_t seed = 0;                    // tokenizer sample and validation split
  CorpusOptions corpus;
  int threads = 0;                      // encoding threads; 0: all cores
  int64_t shard_tokens = int64_t{1} << 28;  // tokens per shard file
  uint32_t token_bytes = 0;             // 0: by vocab (u16 up to 65536 ids), else 2 or 4
  bool overwrite = false;               // replace an existing DIR (atomically)
  bool progress = true;                 // progress line on stderr
};

struct PrepareSummary {
  int64_t input_bytes = 0;
  int64_t train_documents = 0, val_documents = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  int train_shards = 0, val_shards = 0;
  int64_t vocab_size = 0;
  uint64_t tokenizer_hash = 0;
  CorpusStats corpus;
  double tokenizer_seconds = 0;  // training the tokenizer (0 when given)
  double encode_seconds = 0;     // reading, encoding and writing
};

absl::StatusOr<PrepareSummary> PrepareData(const PrepareOptions& options);

// Document `ordinal` (0-based, in corpus order) belongs to the validation
// split: exactly one document in every 1 / val_fraction, at a phase drawn
// from the seed, so val/ spreads evenly over the corpus. When this picks no
// document at all (a corpus of fewer than 1 / val_fraction documents),
// PrepareData puts the last document in val/ (a single document: an error).
bool IsValidationDocument(int64_t ordinal, double val_fraction, uint64_t seed);

// Opens DIR/train (and DIR/val when present) as the trainer would, checks
// them against DIR/tokenizer.model and, when expected_vocab_size > 0, the
// vocab size. Returns a one-line description.
absl::StatusOr<std::string> VerifyPreparedData(const std::string& dir, int64_t expected_vocab_size);

}  // namespace sb
