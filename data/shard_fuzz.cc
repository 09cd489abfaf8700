// libFuzzer target for token shards, header and data: the bytes of one
// shard file go through DecodeShardHeader, then ShardSource::Open and reads
// of whole micro-batches, the path every data.train_path / val_path takes.
// Input layout:
//   byte 0      seq_len = 1 + byte % 64
//   byte 1      batch size = 1 + byte % 4
//   the rest    the shard file (written to a private directory on /dev/shm)
// Besides crashes, leaks and UB (ASan, UBSan) it checks what the trainer
// relies on: errors carry a message; Open accepts exactly the files whose
// header decodes and that hold tokens; a read either fails with a message
// or yields ids in [0, vocab) with targets = inputs shifted by one.
// Build and run: data/fuzz_shards.sh, records in docs/checkpoints.md.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/shard_format.h"
#include "data/shard_source.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

char dir_path[128];  // plain storage: still valid in the atexit handler

void RemoveDir() { ::rmdir(dir_path); }

// A private directory for the input's shard file, removed at exit (each
// input's file is removed after it ran).
const char* Dir() {
  if (dir_path[0] == 0) {
    std::error_code ec;
    const bool shm = std::filesystem::is_directory("/dev/shm", ec);
    std::snprintf(dir_path, sizeof(dir_path), "%s/sb_shard_fuzz_%d", shm ? "/dev/shm" : "/tmp",
                  static_cast<int>(::getpid()));
    std::filesystem::create_directories(dir_path, ec);
    std::atexit(RemoveDir);
  }
  return dir_path;
}

// The checks on one input (the shard file goes to `path`).
void Check(const uint8_t* data, size_t size, const std::string& path) {
  const int seq_len = 1 + data[0] % 64;
  const int batch = 1 + data[1] % 4;
  const std::string file(reinterpret_cast<const char*>(data + 2), size - 2);
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    Require(f != nullptr);
    Require(std::fwrite(file.data(), 1, file.size(), f) == file.size());
    std::fclose(f);
  }
  const absl::StatusOr<sb::ShardHeader> header =
      sb::DecodeShardHeader(file, static_cast<int64_t>(file.size()), path);
  if (!header.ok()) Require(!header.status().message().empty());

  sb::ShardSourceOptions options;
  options.seed = data[0];
  absl::StatusOr<std::unique_ptr<sb::ShardSource>> source = sb::ShardSource::Open(Dir(), options);
  Require(source.ok() == (header.ok() && header->num_tokens > 0));
  if (!source.ok()) {
    Require(!source.status().message().empty());
    return;
  }
  sb::ShardSource& s = **source;
  Require(s.num_tokens() == static_cast<int64_t>(header->num_tokens));
  const absl::Status fits = s.CheckSeqLen(seq_len);
  Require(fits.ok() == (s.NumWindows(seq_len) > 0));
  sb::Batch out;
  // Micro-batches of the first epoch and one far beyond it.
  for (int64_t index : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1} << 40}) {
    const absl::Status read = s.Read(index, batch, seq_len, &out);
    if (!read.ok()) {
      Require(!read.message().empty());
      continue;
    }
    Require(fits.ok());
    const int32_t* in = out.inputs.data<int32_t>();
    const int32_t* tg = out.targets.data<int32_t>();
    for (int b = 0; b < batch; ++b) {
      for (int t = 0; t < seq_len; ++t) {
        const int64_t i = int64_t{b} * seq_len + t;
        Require(in[i] >= 0 && in[i] < s.vocab_size() && tg[i] >= 0 && tg[i] < s.vocab_size());
        if (t + 1 < seq_len) Require(in[i + 1] == tg[i]);
      }
    }
  }
  // The unigram entropy keeps one counter per id: the trainer refuses
  // vocabularies above model.vocab_size (<= 2^24) first; 2^20 here keeps
  // executions fast (a 2^24 vocab costs 128 MiB of counters each time).
  if (s.vocab_size() <= (int64_t{1} << 20)) (void)s.UnigramEntropy();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string path = std::string(Dir()) + "/shard_00000.bin";
  Check(data, size, path);
  ::unlink(path.c_str());
  return 0;
}
