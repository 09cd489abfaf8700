// Shared by the Trainer tests: a small MoE config (2 layers, 4 experts,
// top-2, jitter) over a made-up byte-level corpus in a per-test directory,
// trainers on run directories in it, and token shards with chosen damage.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/shard_writer.h"
#include "gtest/gtest.h"
#include "launch/trainer.h"
#include "moe/io/model_weights.h"
#include "tests/testing/files.h"

namespace sb::testing {

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A small made-up corpus (byte level): deterministic, no downloads.
    std::string text;
    for (int i = 0; i < 600; ++i)
      text += "The quick brown fox " + std::to_string(i * 7 % 13) + " jumps over the lazy dog.\n";
    WriteBytes(dir_.Path("corpus.txt"), text);
    auto config = ParseConfigText(
        "model { vocab_size: 257 d_model: 16 num_layers: 2 num_heads: 2 num_kv_heads: 1 "
        "ffn_dim: 32 expert_ffn_dim: 16 max_seq_len: 32 }\n"
        "moe { num_experts: 4 top_k: 2 router_jitter_eps: 0.05 }\n"
        "train { steps: 8 micro_batch_size: 2 seq_len: 16 grad_accum_steps: 2 log_every: 1 "
        "seed: 7 }\n"
        "optimizer { lr: 1e-2 }\nschedule { warmup_steps: 2 }\n"
        "checkpoint { every_steps: 4 keep_last: 0 }\n",
        "test");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    config_.mutable_data()->set_train_path(dir_.Path("corpus.txt"));
  }

  std::unique_ptr<Trainer> Make(const std::string& run, const TrainConfig& config) {
    auto t = Trainer::Create(config, run.empty() ? "" : dir_.Path(run));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }

  std::string Ckpt(const std::string& run, int64_t step) {
    return CheckpointsDir(dir_.Path(run)) + "/step_" + std::to_string(step);
  }

  // Token shards of n tokens (vocab 257, tokenizer hash `hash`) in dir_/name.
  // Tokens [bad_begin, bad_end) are 0xffff, outside the vocab: a read of a
  // window holding one fails as a corrupt shard.
  std::string WriteTokenShards(const std::string& name, int64_t n, uint64_t hash,
                               int64_t bad_begin = 0, int64_t bad_end = 0) {
    const std::string dir = dir_.Path(name);
    std::filesystem::create_directories(dir);
    ShardHeader header;
    header.token_bytes = 2;
    header.vocab_size = 257;
    header.tokenizer_hash = hash;
    {
      ShardWriter writer(dir, header, n);
      std::vector<int32_t> tokens(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = static_cast<int32_t>(i * 31 % 256);
      EXPECT_TRUE(writer.AppendDocument(tokens).ok());
      EXPECT_TRUE(writer.Close().ok());
    }
    const std::string shard = dir + "/" + ShardWriter::ShardName(0);
    std::string bytes = ReadBytes(shard);
    for (int64_t i = bad_begin; i < bad_end; ++i) {
      bytes[static_cast<size_t>(kShardHeaderBytes + 2 * i)] = '\xff';
      bytes[static_cast<size_t>(kShardHeaderBytes + 2 * i + 1)] = '\xff';
    }
    WriteBytes(shard, bytes);
    return dir;
  }

  // Every parameter's bytes, in order.
  static std::string WeightBytes(Trainer& t) {
    std::string out;
    for (const auto& [name, tensor] : NamedModelWeights(t.model()))
      out.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
    return out;
  }

  TempDir dir_;
  TrainConfig config_;
};

// Path -> bytes of every regular file under dir (none when it is missing).
inline std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[e.path().string()] = ReadBytes(e.path().string());
  return files;
}

}  // namespace sb::testing
