#include "data/shard_source.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sb {
namespace fs = std::filesystem;

namespace {

constexpr char kTokenizerFile[] = "tokenizer.model";

// The dataset's tokenizer.model: beside the shards, else one level up (the
// layout prepare-data writes: DIR/tokenizer.model, DIR/train/, DIR/val/).
std::string FindDatasetTokenizer(const fs::path& shard_dir) {
  std::error_code ec;
  for (const fs::path& dir : {shard_dir, shard_dir.parent_path()}) {
    const fs::path candidate = dir / kTokenizerFile;
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  return "";
}

}  // namespace

bool LooksLikeShardPath(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::path(path).extension() == ".bin";
  if (!fs::is_directory(path, ec)) return false;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_regular_file(ec) && entry.path().extension() == ".bin") return true;
  }
  return false;
}

absl::StatusOr<std::vector<std::string>> ListShardFiles(const std::string& path) {
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_regular_file(path, ec)) {
    files.push_back(path);
    return files;
  }
  if (!fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat("no such shard file or directory: ", path));
  }
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_regular_file(ec) && entry.path().extension() == ".bin") {
      files.push_back(entry.path().string());
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", path, ": ", ec.message()));
  if (files.empty()) return absl::NotFoundError(absl::StrCat("no *.bin token shards in ", path));
  std::sort(files.begin(), files.end());
  return files;
}

absl::StatusOr<std::unique_ptr<ShardSource>> ShardSource::Open(const std::string& path,
                                                               const ShardSourceOptions& options) {
  auto files = ListShardFiles(path);
  if (!files.ok()) return files.status();
  auto source = std::unique_ptr<ShardSource>(new ShardSource());
  source->path_ = path;
  source->seed_ = options.seed;
  for (const std::string& file : *files) {
    auto mapped = MappedFile::Open(file);
    if (!mapped.ok()) return mapped.status();
    auto header = DecodeShardHeader((*mapped)->bytes(), (*mapped)->size(), file);
    if (!header.ok()) return header.status();
    if (source->shards_.empty()) {
      source->header_ = *header;
    } else {
      const ShardHeader& first = source->header_;
      if (header->tokenizer_hash != first.tokenizer_hash) {
        return absl::FailedPreconditionError(absl::StrCat(
            "token shard ", file, " was written by tokenizer ", HashHex(header->tokenizer_hash),
            " but ", files->front(), " by ", HashHex(first.tokenizer_hash),
            ": shards of one dataset must share a tokenizer"));
      }
      if (header->vocab_size != first.vocab_size || header->eos_id != first.eos_id ||
          header->token_bytes != first.token_bytes) {
        return absl::FailedPreconditionError(absl::StrCat(
            "token shard ", file, " disagrees with ", files->front(),
            " on vocab size, EOS id or token width"));
      }
    }
    Shard shard;
    shard.file = std::move(*mapped);
    shard.first_token = source->num_tokens_;
    shard.num_tokens = static_cast<int64_t>(header->num_tokens);
    source->num_tokens_ += shard.num_tokens;
    source->num_documents_ += static_cast<int64_t>(header->num_documents);
    source->shards_.push_back(std::move(shard));
  }
  const uint64_t hash = source->header_.tokenizer_hash;
  std::error_code ec;
  const fs::path dir = fs::is_directory(path, ec) ? fs::path(path) : fs::path(path).parent_path();
  if (const std::string tokenizer = FindDatasetTokenizer(dir); !tokenizer.empty()) {
    auto file_hash = TokenizerFileHash(tokenizer);
    if (!file_hash.ok()) return file_hash.status();
    if (*file_hash != hash) {
      return absl::FailedPreconditionError(absl::StrCat(
          "token shards in ", path, " were written by tokenizer ", HashHex(hash), " but ",
          tokenizer, " hashes to ", HashHex(*file_hash),
          ": the shards come from another tokenizer; re-run prepare-data"));
    }
  }
  if (options.expected_tokenizer_hash != 0 && options.expected_tokenizer_hash != hash) {
    return absl::FailedPreconditionError(absl::StrCat(
        "token shards in ", path, " were written by tokenizer ", HashHex(hash), " but ",
        options.expected_tokenizer_origin, " expects ", HashHex(options.expected_tokenizer_hash),
        ": prepare the data with that tokenizer (prepare-data --tokenizer)"));
  }
  if (source->num_tokens_ == 0) {
    return absl::InvalidArgumentError(absl::StrCat("token shards in ", path, " hold no tokens"));
  }
  return source;
}

int64_t ShardSource::NumWindows(int seq_len) const {
  return WindowSampler(num_tokens_, seq_len, seed_).num_windows();
}

const WindowSampler& ShardSource::SamplerFor(int seq_len) {
  if (!sampler_ || sampler_seq_len_ != seq_len) {
    sampler_ = std::make_unique<WindowSampler>(num_tokens_, seq_len, seed_);
    sampler_seq_len_ = seq_len;
  }
  return *sampler_;
}

absl::Status ShardSource::CopyTokens(int64_t begin, int64_t count, int32_t* out) const {
  if (begin < 0 || count < 0 || begin + count > num_tokens_) {
    return absl::OutOfRangeError(absl::StrFormat("tokens [%d, %d) outside the stream of %d in %s",
                                                 begin, begin + count, num_tokens_, path_));
  }
  // The shard holding `begin`: the last one whose first token is <= begin.
  auto it = std::upper_bound(shards_.begin(), shards_.end(), begin,
                             [](int64_t pos, const Shard& s) { return pos < s.first_token; });
  size_t shard = static_cast<size_t>(it - shards_.begin()) - 1;
  const int width = static_cast<int>(header_.token_bytes);
  const uint64_t vocab = header_.vocab_size;
  int64_t pos = begin, done = 0;
  while (done < count) {
    const Shard& s = shards_[shard];
    const int64_t offset = pos - s.first_token;
    const int64_t n = std::min(count - done, s.num_tokens - offset);
    const uint8_t* src = s.file->data() + kShardHeaderBytes + offset * width;
    for (int64_t i = 0; i < n; ++i) {
      uint32_t id;
      if (width == 2) {
        uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        id = v;
      } else {
        std::memcpy(&id, src + 4 * i, 4);
      }
      if (id >= vocab) {
        return absl::DataLossError(absl::StrFormat(
            "token shard %s: token %d at index %d is outside the vocab of %d (corrupt shard)",
            s.file->path(), id, offset + i, vocab));
      }
      out[done + i] = static_cast<int32_t>(id);
    }
    done += n;
    pos += n;
    ++shard;
  }
  return absl::OkStatus();
}

absl::Status ShardSource::ReadSample(int64_t sample_index, int seq_len, int32_t* inputs,
                                     int32_t* targets) {
  if (sample_index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative sample index ", sample_index));
  }
  const WindowSampler& sampler = SamplerFor(seq_len);
  if (sampler.num_windows() == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s holds %d tokens, fewer than one window of seq_len + 1 = %d", path_,
                        num_tokens_, seq_len + 1));
  }
  const int64_t start = sampler.WindowStart(sample_index);
  window_.resize(static_cast<size_t>(seq_len) + 1);
  if (absl::Status s = CopyTokens(start, seq_len + 1, window_.data()); !s.ok()) return s;
  std::copy(window_.begin(), window_.end() - 1, inputs);
  std::copy(window_.begin() + 1, window_.end(), targets);
  return absl::OkStatus();
}

absl::Status ShardSource::Read(int64_t index, int batch_size, int seq_len, Batch* out) {
  if (absl::Status s = PrepareBatch(index, batch_size, seq_len, out); !s.ok()) return s;
  int32_t* in = out->inputs.data<int32_t>();
  int32_t* tg = out->targets.data<int32_t>();
  for (int b = 0; b < batch_size; ++b) {
    const int64_t offset = int64_t{b} * seq_len;
    if (absl::Status s = ReadSample(index * batch_size + b, seq_len, in + offset, tg + offset);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

std::string ShardSource::Describe() const {
  return absl::StrFormat("%.2fM tokens, %d documents, %d shard%s in %s (vocab %d, tokenizer %s)",
                         num_tokens_ / 1e6, num_documents_, shards_.size(),
                         shards_.size() == 1 ? "" : "s", path_, header_.vocab_size,
                         HashHex(header_.tokenizer_hash));
}

double ShardSource::UnigramEntropy() const {
  // One pass over the stream in 1M-token chunks (~10 ms per 3M tokens).
  std::vector<int64_t> counts(static_cast<size_t>(vocab_size()), 0);
  std::vector<int32_t> chunk(1 << 20);
  for (int64_t begin = 0; begin < num_tokens_; begin += static_cast<int64_t>(chunk.size())) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(chunk.size()), num_tokens_ - begin);
    if (!CopyTokens(begin, n, chunk.data()).ok()) return std::nan("");
    for (int64_t i = 0; i < n; ++i) ++counts[static_cast<size_t>(chunk[i])];
  }
  return EntropyOfCounts(counts);
}

}  // namespace sb
