#include "data/prepare.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/progress.h"
#include "data/sentence_sample.h"
#include "data/shard_source.h"
#include "data/shard_writer.h"
#include "data/staged_dir.h"
#include "data/tokenizer.h"
#include "moe/core/rng.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kChunkBytes = 4 << 20;  // encode in chunks of ~4 MB of text
constexpr size_t kChunkDocuments = 4096;
constexpr int64_t kMaxTokenizerLineBytes = 8192;
constexpr int64_t kMaxUtf8Warnings = 10;  // files named in warnings; then a total
// SentencePiece stores num_threads in the model, so it changes the model's
// bytes and hash (the pieces do not depend on it): fixed, so that --threads
// never changes the tokenizer.
constexpr int kTokenizerTrainThreads = 2;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

absl::Status ValidateOptions(const PrepareOptions& o) {
  if (o.inputs.empty()) return absl::InvalidArgumentError("--input is required");
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  if (o.tokenizer_path.empty() == (o.vocab_size <= 0)) {
    return absl::InvalidArgumentError(
        "give exactly one of --tokenizer (an existing tokenizer.model) and --vocab_size "
        "(train a new one)");
  }
  if (!o.tokenizer_inputs.empty() && !o.tokenizer_path.empty()) {
    return absl::InvalidArgumentError("--tokenizer_input needs --vocab_size");
  }
  if (!(o.val_fraction >= 0 && o.val_fraction <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--val_fraction ", o.val_fraction, " outside [0, 0.5]"));
  }
  if (o.shard_tokens <= 0) return absl::InvalidArgumentError("--shard_tokens must be > 0");
  if (o.token_bytes != 0 && o.token_bytes != 2 && o.token_bytes != 4) {
    return absl::InvalidArgumentError("--token_dtype must be auto, u16 or u32");
  }
  if (o.tokenizer_sample_lines <= 0) {
    return absl::InvalidArgumentError("--tokenizer_sample_lines must be > 0");
  }
  return absl::OkStatus();
}

// Trains a BPE model on a seeded sample of lines of the tokenizer inputs.
absl::StatusOr<std::unique_ptr<Tokenizer>> TrainOnCorpus(const PrepareOptions& o) {
  const std::vector<std::string>& inputs =
      o.tokenizer_inputs.empty() ? o.inputs : o.tokenizer_inputs;
  auto files = ListCorpusFiles(inputs, o.corpus);
  if (!files.ok()) return files.status();
  SentenceReservoir reservoir(o.tokenizer_sample_lines, kMaxTokenizerLineBytes, o.seed);
  CorpusStats stats;
  for (const CorpusFile& file : *files) {
    absl::Status s = ReadDocuments(file, o.corpus, &stats, [&](std::string&& text, int64_t) {
      reservoir.AddDocument(text);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
  }
  if (reservoir.sample().empty()) {
    return absl::InvalidArgumentError("no text lines to train the tokenizer on");
  }
  if (o.progress) {
    std::fprintf(stderr, "[prepare-data] training a %lld-piece BPE tokenizer on %zu of %lld lines "
                 "(%.1f MB)\n", static_cast<long long>(o.vocab_size), reservoir.sample().size(),
                 static_cast<long long>(reservoir.lines_seen()), reservoir.sample_bytes() / 1e6);
  }
  TokenizerTrainOptions train;
  train.vocab_size = static_cast<int>(o.vocab_size);
  train.num_threads = kTokenizerTrainThreads;
  train.max_sentence_length = static_cast<int>(kMaxTokenizerLineBytes);
  std::string model, error;
  if (!TrainTokenizer(reservoir.sample(), train, &model, &error)) {
    return absl::InvalidArgumentError(error);
  }
  auto tokenizer = Tokenizer::FromModelBytes(std::move(model), &error);
  if (!tokenizer) return absl::InternalError(absl::StrCat("trained tokenizer: ", error));
  return tokenizer;
}

// Encodes docs[i] followed by EOS into (*ids)[i] on `threads` threads. The
// unit of work is a tokenizer segment (~4 KB of a long document, or a whole
// short one), so one huge document still uses every thread.
absl::Status EncodeChunk(const Tokenizer& tokenizer, const std::vector<std::string>& docs,
                         int threads, std::vector<std::vector<int32_t>>* ids) {
  struct Work {
    size_t doc;
    size_t begin, end;  // bytes of docs[doc]
  };
  std::vector<Work> work;
  std::vector<size_t> first_work(docs.size() + 1);
  for (size_t d = 0; d < docs.size(); ++d) {
    first_work[d] = work.size();
    const std::vector<size_t> bounds = tokenizer.SegmentBounds(docs[d]);
    for (size_t i = 0; i + 1 < bounds.size(); ++i) work.push_back({d, bounds[i], bounds[i + 1]});
  }
  first_work[docs.size()] = work.size();
  std::vector<std::vector<int32_t>> parts(work.size());
  std::atomic<size_t> next{0};
  std::mutex error_mu;
  std::string first_error;
  auto run = [&]() {
    std::string error;
    for (size_t i = next++; i < work.size(); i = next++) {
      const Work& w = work[i];
      if (!tokenizer.EncodeSegment(docs[w.doc], w.begin, w.end, &parts[i], &error)) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.empty()) first_error = error;
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(run);
  run();
  for (std::thread& t : pool) t.join();
  if (!first_error.empty()) return absl::InternalError(absl::StrCat("encoding: ", first_error));
  ids->resize(docs.size());
  for (size_t d = 0; d < docs.size(); ++d) {
    std::vector<int32_t>& out = (*ids)[d];
    out.clear();
    for (size_t i = first_work[d]; i < first_work[d + 1]; ++i) {
      out.insert(out.end(), parts[i].begin(), parts[i].end());
    }
    out.push_back(tokenizer.eos_id());
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::string InfoJson(const PrepareOptions& o, const PrepareSummary& s, int eos_id) {
  nlohmann::json info = {
      {"format", "switchboard token shards"},
      {"shard_version", kShardVersion},
      {"inputs", o.inputs},
      {"tokenizer", o.tokenizer_path.empty() ? "trained by prepare-data" : o.tokenizer_path},
      {"tokenizer_hash", HashHex(s.tokenizer_hash)},
      {"vocab_size", s.vocab_size},
      {"eos_id", eos_id},
      {"seed", o.seed},
      {"val_fraction", o.val_fraction},
      {"input_bytes", s.input_bytes},
      {"train", {{"documents", s.train_documents}, {"tokens", s.train_tokens},
                 {"shards", s.train_shards}}},
      {"val", {{"documents", s.val_documents}, {"tokens", s.val_tokens},
               {"shards", s.val_shards}}},
      {"skipped_empty_documents", s.corpus.empty_documents},
      {"skipped_binary_files", s.corpus.skipped_binary},
      {"invalid_utf8_bytes_replaced", s.corpus.utf8_replaced},
  };
  return info.dump(2) + "\n";
}

}  // namespace

bool IsValidationDocument(int64_t ordinal, double val_fraction, uint64_t seed) {
  if (val_fraction <= 0) return false;
  const double phase = UniformAt(StreamKey({seed, 0x7a11da7eULL}), 0);
  return std::floor((ordinal + 1) * val_fraction + phase) >
         std::floor(ordinal * val_fraction + phase);
}

absl::StatusOr<PrepareSummary> PrepareData(const PrepareOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  PrepareOptions o = options;
  if (o.threads <= 0) o.threads = std::max(1u, std::thread::hardware_concurrency());
  auto files = ListCorpusFiles(o.inputs, o.corpus);
  if (!files.ok()) return files.status();
  auto staged = StagedDir::Create(o.out_dir, o.overwrite);  // fails early when unwritable
  if (!staged.ok()) return staged.status();
  PrepareSummary summary;
  for (const CorpusFile& f : *files) summary.input_bytes += f.bytes;

  // The tokenizer: given, or trained on a sample of the corpus.
  std::unique_ptr<Tokenizer> tokenizer;
  const auto tokenizer_start = std::chrono::steady_clock::now();
  if (!o.tokenizer_path.empty()) {
    std::string error;
    tokenizer = Tokenizer::Load(o.tokenizer_path, &error);
    if (!tokenizer) return absl::InvalidArgumentError(error);
  } else {
    auto trained = TrainOnCorpus(o);
    if (!trained.ok()) return trained.status();
    tokenizer = std::move(*trained);
    summary.tokenizer_seconds = Seconds(tokenizer_start);
  }
  const std::string tokenizer_name = o.tokenizer_path.empty() ? "the trained tokenizer"
                                                              : o.tokenizer_path;
  if (tokenizer->eos_id() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        tokenizer_name, " has no EOS piece; prepare-data ends every document with EOS"));
  }
  summary.vocab_size = tokenizer->vocab_size();
  summary.tokenizer_hash = TokenizerHash(tokenizer->model_bytes());
  const uint32_t token_bytes =
      o.token_bytes != 0 ? o.token_bytes : TokenBytesForVocab(summary.vocab_size);
  if (absl::Status fits = CheckVocabFits(summary.vocab_size, token_bytes); !fits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_name, ": ", fits.message(), " (use --token_dtype u32 or auto)"));
  }
  const std::string dir = staged->path();
  if (absl::Status s = WriteFile(dir + "/tokenizer.model", tokenizer->model_bytes()); !s.ok()) {
    return s;
  }

  // Encode and write, chunk by chunk, documents in corpus order.
  ShardHeader header;
  header.token_bytes = token_bytes;
  header.vocab_size = static_cast<uint64_t>(summary.vocab_size);
  header.tokenizer_hash = summary.tokenizer_hash;
  header.eos_id = tokenizer->eos_id();
  std::error_code ec;
  fs::create_directory(dir + "/train", ec);
  if (o.val_fraction > 0) fs::create_directory(dir + "/val", ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, "/train|val"));
  ShardWriter train(dir + "/train", header, o.shard_tokens);
  ShardWriter val(dir + "/val", header, o.shard_tokens);
  ProgressLine progress("prepare-data", summary.input_bytes, o.progress);
  std::vector<std::string> docs;
  std::vector<std::vector<int32_t>> ids;
  int64_t chunk_bytes = 0, bytes_done = 0, ordinal = 0;
  // The latest train-bound document is held back one step: if the rule
  // picks no validation document at all (fewer than 1 / val_fraction
  // documents), the last document goes to val/ instead.
  std::vector<int32_t> held;
  bool holding = false;
  auto flush = [&]() -> absl::Status {
    if (absl::Status s = EncodeChunk(*tokenizer, docs, o.threads, &ids); !s.ok()) return s;
    for (size_t i = 0; i < docs.size(); ++i, ++ordinal) {
      if (IsValidationDocument(ordinal, o.val_fraction, o.seed)) {
        if (absl::Status s = val.AppendDocument(ids[i]); !s.ok()) return s;
        continue;
      }
      if (holding) {
        if (absl::Status s = train.AppendDocument(held); !s.ok()) return s;
      }
      held = std::move(ids[i]);
      holding = true;
    }
    docs.clear();
    chunk_bytes = 0;
    progress.Update(bytes_done, ordinal);
    return absl::OkStatus();
  };
  int64_t file_start = 0, files_with_bad_utf8 = 0;
  for (const CorpusFile& file : *files) {
    const int64_t replaced_before = summary.corpus.utf8_replaced;
    absl::Status s = ReadDocuments(file, o.corpus, &summary.corpus,
                                   [&](std::string&& text, int64_t consumed) {
      bytes_done = file_start + consumed;
      chunk_bytes += static_cast<int64_t>(text.size());
      docs.push_back(std::move(text));
      if (chunk_bytes >= kChunkBytes || docs.size() >= kChunkDocuments) return flush();
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    if (const int64_t replaced = summary.corpus.utf8_replaced - replaced_before; replaced > 0) {
      if (++files_with_bad_utf8 <= kMaxUtf8Warnings) {
        std::fprintf(stderr, "[prepare-data] warning: %s: replaced %lld invalid UTF-8 bytes with "
                     "U+FFFD\n", file.path.c_str(), static_cast<long long>(replaced));
      }
    }
    file_start += file.bytes;
    bytes_done = file_start;
  }
  if (absl::Status s = flush(); !s.ok()) return s;
  if (holding) {
    const bool to_val = o.val_fraction > 0 && val.num_documents() == 0 && train.num_documents() > 0;
    if (absl::Status s = (to_val ? val : train).AppendDocument(held); !s.ok()) return s;
  }
  if (absl::Status s = train.Close(); !s.ok()) return s;
  if (absl::Status s = val.Close(); !s.ok()) return s;
  progress.Finish(bytes_done, ordinal);
  summary.encode_seconds = progress.elapsed_seconds();
  if (files_with_bad_utf8 > kMaxUtf8Warnings) {
    std::fprintf(stderr, "[prepare-data] warning: %lld invalid UTF-8 bytes replaced in %lld files\n",
                 static_cast<long long>(summary.corpus.utf8_replaced),
                 static_cast<long long>(files_with_bad_utf8));
  }

  summary.train_documents = train.num_documents();
  summary.val_documents = val.num_documents();
  summary.train_tokens = train.num_tokens();
  summary.val_tokens = val.num_tokens();
  summary.train_shards = train.num_shards();
  summary.val_shards = val.num_shards();
  if (summary.train_tokens == 0 && summary.val_tokens == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty input: no text in ", files->size(), " file(s) under the inputs"));
  }
  if (o.val_fraction > 0 && (summary.val_documents == 0 || summary.train_documents == 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cannot split %d document(s) into train and val; pass --val_fraction 0 for no val/",
        ordinal));
  }
  if (absl::Status s = WriteFile(dir + "/info.json", InfoJson(o, summary, header.eos_id));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = staged->Commit(); !s.ok()) return s;
  return summary;
}

absl::StatusOr<std::string> VerifyPreparedData(const std::string& dir,
                                               int64_t expected_vocab_size) {
  const std::string tokenizer = dir + "/tokenizer.model";
  auto hash = TokenizerFileHash(tokenizer);
  if (!hash.ok()) return hash.status();
  ShardSourceOptions options;
  options.expected_tokenizer_hash = *hash;
  options.expected_tokenizer_origin = tokenizer;
  std::string description;
  for (const char* split : {"train", "val"}) {
    const std::string path = absl::StrCat(dir, "/", split);
    std::error_code ec;
    if (std::string(split) == "val" && !fs::exists(path, ec)) continue;
    auto source = ShardSource::Open(path, options);
    if (!source.ok()) return source.status();
    if (expected_vocab_size > 0 && (*source)->vocab_size() != expected_vocab_size) {
      return absl::FailedPreconditionError(absl::StrCat(path, " has vocab size ",
                                                        (*source)->vocab_size(), ", expected ",
                                                        expected_vocab_size));
    }
    absl::StrAppend(&description, description.empty() ? "" : "; ", split, ": ",
                    (*source)->Describe());
  }
  return description;
}

}  // namespace sb
