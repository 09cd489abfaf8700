#include "data/byte_text_source.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sb {

absl::StatusOr<std::vector<std::string>> ListInputFiles(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_regular_file(path, ec)) {
    files.push_back(path);
  } else if (fs::is_directory(path, ec)) {
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it->is_regular_file(ec)) files.push_back(it->path().string());
    }
    if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", path, ": ", ec.message()));
    std::sort(files.begin(), files.end());
  } else {
    return absl::NotFoundError(absl::StrCat("no such file or directory: ", path));
  }
  if (files.empty()) return absl::InvalidArgumentError(absl::StrCat("no files under ", path));
  return files;
}

absl::StatusOr<std::unique_ptr<ByteTextSource>> ByteTextSource::Open(const std::string& path,
                                                                     uint64_t seed) {
  auto files = ListInputFiles(path);
  if (!files.ok()) return files.status();
  auto source = std::unique_ptr<ByteTextSource>(new ByteTextSource());
  source->seed_ = seed;
  for (const std::string& file : *files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", file));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.empty()) continue;
    // Byte-level training reads plain text only: a NUL byte marks a binary
    // file (the same test as prepare-data's), most likely a wrong path.
    if (const size_t nul = bytes.find('\0'); nul != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, " is not a text file (NUL byte at offset ", nul,
          "): without token shards only plain text is read, as raw bytes; make shards with "
          "switchboard prepare-data"));
    }
    for (unsigned char c : bytes) source->tokens_.push_back(c);
    source->tokens_.push_back(kByteEos);
    ++source->num_files_;
  }
  if (source->tokens_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("input is empty: ", path));
  }
  return source;
}

absl::Status ByteTextSource::Read(int64_t index, int batch_size, int seq_len, Batch* out) {
  if (absl::Status s = PrepareBatch(index, batch_size, seq_len, out); !s.ok()) return s;
  if (!sampler_ || sampler_->num_windows() != (num_tokens() - 1) / seq_len) {
    sampler_ = std::make_unique<WindowSampler>(num_tokens(), seq_len, seed_);
  }
  if (sampler_->num_windows() == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data has %d tokens, fewer than one window of seq_len + 1 = %d", num_tokens(), seq_len + 1));
  }
  int32_t* in = out->inputs.data<int32_t>();
  int32_t* tg = out->targets.data<int32_t>();
  for (int b = 0; b < batch_size; ++b) {
    const int64_t start = sampler_->WindowStart(index * batch_size + b);
    const int32_t* w = tokens_.data() + start;
    std::copy(w, w + seq_len, in + int64_t{b} * seq_len);
    std::copy(w + 1, w + seq_len + 1, tg + int64_t{b} * seq_len);
  }
  return absl::OkStatus();
}

std::string ByteTextSource::Describe() const {
  return absl::StrFormat(
      "%.2fM tokens: the raw bytes of %d text files (byte-level, vocab %d; not a prepared "
      "dataset)",
      num_tokens() / 1e6, num_files_, kByteVocabSize);
}

double ByteTextSource::UnigramEntropy() const {
  std::vector<int64_t> counts(kByteVocabSize, 0);
  for (int32_t t : tokens_) ++counts[static_cast<size_t>(t)];
  return EntropyOfCounts(counts);
}

}  // namespace sb
