#include "data/shard_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sb {

ShardWriter::ShardWriter(std::string dir, const ShardHeader& header,
                         int64_t max_tokens_per_shard)
    : dir_(std::move(dir)), header_(header), max_tokens_per_shard_(max_tokens_per_shard) {}

ShardWriter::~ShardWriter() {
  if (file_ != nullptr) std::fclose(file_);  // only after a failure; caller removes the dir
}

std::string ShardWriter::ShardName(int index) { return absl::StrFormat("shard_%05d.bin", index); }

absl::Status ShardWriter::OpenNextShard() {
  path_ = absl::StrCat(dir_, "/", ShardName(num_shards_));
  file_ = std::fopen(path_.c_str(), "wb");
  if (file_ == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", path_, ": ", std::strerror(errno)));
  }
  current_ = header_;
  current_.num_tokens = 0;
  current_.num_documents = 0;
  const std::string placeholder = EncodeShardHeader(current_);  // rewritten by FinishShard
  if (std::fwrite(placeholder.data(), 1, placeholder.size(), file_) != placeholder.size()) {
    return absl::InternalError(absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
  }
  ++num_shards_;
  return absl::OkStatus();
}

absl::Status ShardWriter::FinishShard() {
  const std::string head = EncodeShardHeader(current_);
  bool ok = std::fseek(file_, 0, SEEK_SET) == 0 &&
            std::fwrite(head.data(), 1, head.size(), file_) == head.size() &&
            std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  const int err = errno;
  ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok) {
    return absl::InternalError(absl::StrCat("cannot write ", path_, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status ShardWriter::AppendDocument(const std::vector<int32_t>& tokens) {
  const int width = static_cast<int>(header_.token_bytes);
  size_t next = 0;
  while (next < tokens.size()) {
    if (file_ == nullptr) {
      if (absl::Status s = OpenNextShard(); !s.ok()) return s;
    }
    const int64_t room = max_tokens_per_shard_ - static_cast<int64_t>(current_.num_tokens);
    const size_t n = std::min(tokens.size() - next, static_cast<size_t>(room));
    buffer_.resize(n * width);
    for (size_t i = 0; i < n; ++i) {
      const int32_t id = tokens[next + i];
      if (id < 0 || static_cast<uint64_t>(id) >= header_.vocab_size) {
        return absl::InternalError(
            absl::StrCat("token id ", id, " outside the vocab of ", header_.vocab_size));
      }
      if (id == header_.eos_id) ++current_.num_documents;
      if (width == 2) {
        const uint16_t v = static_cast<uint16_t>(id);
        std::memcpy(buffer_.data() + i * 2, &v, 2);
      } else {
        const uint32_t v = static_cast<uint32_t>(id);
        std::memcpy(buffer_.data() + i * 4, &v, 4);
      }
    }
    if (std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size()) {
      return absl::InternalError(absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
    }
    current_.num_tokens += n;
    total_tokens_ += static_cast<int64_t>(n);
    next += n;
    if (static_cast<int64_t>(current_.num_tokens) == max_tokens_per_shard_) {
      total_documents_ += static_cast<int64_t>(current_.num_documents);
      if (absl::Status s = FinishShard(); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ShardWriter::Close() {
  if (file_ == nullptr) return absl::OkStatus();
  total_documents_ += static_cast<int64_t>(current_.num_documents);
  return FinishShard();
}

}  // namespace sb
