// ShardSource: the stream is continuous across shards, a batch is a pure
// function of its index (a resumed run reads exactly the next batches),
// data-parallel ranks never share a window within an epoch, and every bad
// shard or tokenizer mix-up fails at open with the file's name.
#include "data/shard_source.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "data/batch_source.h"
#include "data/open_source.h"
#include "data/test_util.h"

namespace sb {
namespace {

using testing::ScratchDir;

constexpr uint64_t kHash = 0x5eed0fdeadbeefULL;

std::unique_ptr<ShardSource> OpenOrDie(const std::string& path, uint64_t seed = 7) {
  ShardSourceOptions options;
  options.seed = seed;
  auto source = ShardSource::Open(path, options);
  EXPECT_TRUE(source.ok()) << source.status();
  return source.ok() ? std::move(*source) : nullptr;
}

std::vector<int32_t> BatchInputs(BatchSource& source, int64_t index, int batch, int seq) {
  Batch out;
  const absl::Status s = source.Read(index, batch, seq, &out);
  EXPECT_TRUE(s.ok()) << s;
  const int32_t* p = out.inputs.data<int32_t>();
  return std::vector<int32_t>(p, p + batch * seq);
}

TEST(ShardSourceTest, StreamIsContinuousAcrossShards) {
  ScratchDir dir;
  const auto tokens = testing::RandomTokens(10'000, 8192, 1);
  testing::WriteShards(dir / "train", tokens, 8192, /*shard_tokens=*/1'234, kHash);
  auto source = OpenOrDie(dir / "train");
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->num_shards(), 9);
  EXPECT_EQ(source->num_tokens(), 10'000);
  EXPECT_EQ(source->vocab_size(), 8192);
  std::vector<int32_t> all(tokens.size());
  ASSERT_TRUE(source->CopyTokens(0, 10'000, all.data()).ok());
  EXPECT_EQ(all, tokens);
  // Every window of a few batches matches the stream, targets shifted by one.
  const int seq = 100;
  Batch batch;
  for (int64_t index = 0; index < 30; ++index) {
    ASSERT_TRUE(source->Read(index, 4, seq, &batch).ok());
    for (int b = 0; b < 4; ++b) {
      const int32_t* in = batch.inputs.data<int32_t>() + b * seq;
      const int32_t* tg = batch.targets.data<int32_t>() + b * seq;
      // Locate the window: starts are multiples of seq_len.
      int64_t start = -1;
      for (int64_t w = 0; w + seq < 10'000 && start < 0; w += seq) {
        if (std::equal(in, in + seq, tokens.begin() + w)) start = w;
      }
      ASSERT_GE(start, 0) << "batch " << index << " row " << b << " is not a window";
      EXPECT_TRUE(std::equal(tg, tg + seq, tokens.begin() + start + 1));
    }
  }
}

TEST(ShardSourceTest, ResumedSourceReadsIdenticalNextBatches) {
  ScratchDir dir;
  testing::WriteShards(dir / "d", testing::RandomTokens(50'000, 30'000, 2), 30'000, 7'000, kHash);
  // Run A reads batches 0..39 in order; run B is a fresh process resuming at 25.
  auto a = OpenOrDie(dir / "d", 99);
  std::vector<std::vector<int32_t>> first_run;
  for (int64_t i = 0; i < 40; ++i) first_run.push_back(BatchInputs(*a, i, 8, 64));
  auto b = OpenOrDie(dir / "d", 99);
  for (int64_t i = 25; i < 40; ++i) {
    EXPECT_EQ(BatchInputs(*b, i, 8, 64), first_run[static_cast<size_t>(i)]) << "batch " << i;
  }
  // Another seed reads another order.
  auto c = OpenOrDie(dir / "d", 100);
  EXPECT_NE(BatchInputs(*c, 0, 8, 64), first_run[0]);
}

// index = step * (world * accum) + accum_index * world + rank (data/batch_source.h).
TEST(ShardSourceTest, DataParallelRanksNeverShareAWindowWithinAnEpoch) {
  ScratchDir dir;
  // Token i has id i, so a window is identified by its first input token.
  const int seq = 16, batch = 4;
  const int64_t num_windows = 512;
  std::vector<int32_t> tokens(num_windows * seq + 1);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i);
  testing::WriteShards(dir / "d", tokens, 70'000, 3'000, kHash);  // u32 tokens
  for (int world : {1, 2, 4}) {
    for (int accum : {1, 2}) {
      auto source = OpenOrDie(dir / "d", 5);
      ASSERT_EQ(source->NumWindows(seq), num_windows);
      const int64_t samples_per_step = int64_t{world} * accum * batch;
      const int64_t steps_per_epoch = num_windows / samples_per_step;
      for (int64_t epoch = 0; epoch < 2; ++epoch) {
        std::set<int32_t> seen;
        for (int64_t s = epoch * steps_per_epoch; s < (epoch + 1) * steps_per_epoch; ++s) {
          for (int rank = 0; rank < world; ++rank) {
            for (int a = 0; a < accum; ++a) {
              const int64_t index = s * (world * accum) + a * world + rank;
              const auto in = BatchInputs(*source, index, batch, seq);
              for (int b = 0; b < batch; ++b) {
                const int32_t start = in[static_cast<size_t>(b * seq)];
                ASSERT_EQ(start % seq, 0);
                ASSERT_TRUE(seen.insert(start).second)
                    << "world " << world << " accum " << accum << " rank " << rank << " step "
                    << s << " re-reads window at token " << start;
              }
            }
          }
        }
        EXPECT_EQ(static_cast<int64_t>(seen.size()), num_windows);  // a full epoch
      }
    }
  }
}

TEST(ShardSourceTest, RejectsShardsOfAnotherTokenizer) {
  ScratchDir dir;
  testing::WriteShards(dir / "ds/train", testing::RandomTokens(1000, 500, 3), 500, 600, kHash);
  testing::WriteFile(dir / "ds/tokenizer.model", "some other tokenizer model bytes");
  auto source = ShardSource::Open(dir / "ds/train", {});
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(source.status().message().find("another tokenizer"), std::string::npos)
      << source.status();
  EXPECT_NE(source.status().message().find("tokenizer.model"), std::string::npos);
}

TEST(ShardSourceTest, RejectsShardsThatTheConfigsTokenizerDidNotWrite) {
  ScratchDir dir;
  testing::WriteShards(dir / "d", testing::RandomTokens(1000, 500, 3), 500, 600, kHash);
  ShardSourceOptions options;
  options.expected_tokenizer_hash = kHash + 1;
  options.expected_tokenizer_origin = "data.tokenizer_path llama/tokenizer.model";
  auto source = ShardSource::Open(dir / "d", options);
  ASSERT_FALSE(source.ok());
  EXPECT_NE(source.status().message().find("llama/tokenizer.model"), std::string::npos)
      << source.status();
  options.expected_tokenizer_hash = kHash;
  EXPECT_TRUE(ShardSource::Open(dir / "d", options).ok());
}

TEST(ShardSourceTest, ConfigTokenizerPathIsChecked) {
  ScratchDir dir;
  const std::string model = "tokenizer model bytes";
  testing::WriteFile(dir / "tok.model", model);
  testing::WriteShards(dir / "d", testing::RandomTokens(1000, 500, 3), 500, 600,
                       TokenizerHash(model));
  testing::WriteShards(dir / "e", testing::RandomTokens(1000, 500, 3), 500, 600, kHash);
  switchboard::DataConfig data;
  data.set_tokenizer_path(dir / "tok.model");
  data.set_train_path(dir / "d");
  EXPECT_TRUE(OpenTrainSource(data, 1).ok());
  data.set_train_path(dir / "e");
  auto bad = OpenTrainSource(data, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tok.model"), std::string::npos) << bad.status();
}

TEST(ShardSourceTest, RejectsShardsThatDisagree) {
  ScratchDir dir;
  testing::WriteShards(dir / "d", testing::RandomTokens(1000, 500, 3), 500, 600, kHash);
  testing::WriteShards(dir / "x", testing::RandomTokens(100, 500, 3), 500, 600, kHash + 1);
  std::filesystem::copy_file(dir / "x/shard_00000.bin", dir / "d/shard_00009.bin");
  auto source = ShardSource::Open(dir / "d", {});
  ASSERT_FALSE(source.ok());
  EXPECT_NE(source.status().message().find("shard_00009.bin"), std::string::npos)
      << source.status();
}

TEST(ShardSourceTest, RejectsTruncatedShard) {
  ScratchDir dir;
  testing::WriteShards(dir / "d", testing::RandomTokens(1000, 500, 3), 500, 600, kHash);
  std::filesystem::resize_file(dir / "d/shard_00001.bin", 100);
  auto source = ShardSource::Open(dir / "d", {});
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(source.status().message().find("shard_00001.bin"), std::string::npos);
  EXPECT_NE(source.status().message().find("size mismatch"), std::string::npos)
      << source.status();
}

TEST(ShardSourceTest, RejectsForeignFile) {
  ScratchDir dir;
  testing::WriteShards(dir / "d", testing::RandomTokens(1000, 500, 3), 500, 600, kHash);
  testing::WriteFile(dir / "d/notes.bin", std::string(200, 'z'));
  auto source = ShardSource::Open(dir / "d", {});
  ASSERT_FALSE(source.ok());
  EXPECT_NE(source.status().message().find("notes.bin"), std::string::npos);
  EXPECT_NE(source.status().message().find("bad magic"), std::string::npos) << source.status();
}

TEST(ShardSourceTest, CorruptTokenIsAnErrorOnRead) {
  ScratchDir dir;
  testing::WriteShards(dir / "d", std::vector<int32_t>(1001, 7), 500, 5000, kHash);
  {
    std::string bytes = testing::ReadFile(dir / "d/shard_00000.bin");
    bytes[kShardHeaderBytes + 2 * 10] = '\xff';  // token 10 := 0x..ff >= 500
    bytes[kShardHeaderBytes + 2 * 10 + 1] = '\xff';
    testing::WriteFile(dir / "d/shard_00000.bin", bytes);
  }
  auto source = OpenOrDie(dir / "d");
  Batch batch;
  absl::Status first_error;
  for (int64_t i = 0; i < 100 && first_error.ok(); ++i) first_error = source->Read(i, 1, 100, &batch);
  ASSERT_FALSE(first_error.ok());
  EXPECT_NE(first_error.message().find("outside the vocab"), std::string::npos) << first_error;
}

TEST(ShardSourceTest, TooShortForOneWindow) {
  ScratchDir dir;
  testing::WriteShards(dir / "d", testing::RandomTokens(50, 500, 3), 500, 600, kHash);
  auto source = OpenOrDie(dir / "d");
  Batch batch;
  const absl::Status s = source->Read(0, 1, 64, &batch);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("fewer than one window"), std::string::npos) << s;
}

TEST(ShardSourceTest, OpenBatchSourceDetectsTheKindOfPath) {
  ScratchDir dir;
  testing::WriteShards(dir / "ds/train", testing::RandomTokens(1000, 500, 3), 500, 600, kHash);
  testing::WriteFile(dir / "text/a.txt", "hello world, some bytes of text");
  auto shards = OpenBatchSource(dir / "ds/train", 1);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_EQ((*shards)->vocab_size(), 500);
  auto text = OpenBatchSource(dir / "text", 1);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ((*text)->vocab_size(), 257);  // byte-level
  // A dataset root is a mistake worth naming.
  testing::WriteFile(dir / "ds/tokenizer.model", "m");
  auto root = OpenBatchSource(dir / "ds", 1);
  ASSERT_FALSE(root.ok());
  EXPECT_NE(root.status().message().find("/train"), std::string::npos) << root.status();
}

// Raw bytes are read only from text: the files of a prepared dataset and
// binary files used to be read as byte-level text without a word.
TEST(ShardSourceTest, OnlyTextIsReadAsRawBytesAndTheDescriptionSaysSo) {
  ScratchDir dir;
  testing::WriteShards(dir / "ds/train", testing::RandomTokens(1000, 500, 3), 500, 600, kHash);
  testing::WriteFile(dir / "ds/tokenizer.model", std::string("\x0a\x00model", 7));
  testing::WriteFile(dir / "ds/info.json", "{\"tokens\": 1000}\n");
  for (const char* file : {"ds/info.json", "ds/tokenizer.model"}) {
    auto source = OpenBatchSource(dir / file, 1);
    ASSERT_FALSE(source.ok()) << file;
    EXPECT_NE(source.status().message().find("is a file of the prepared dataset " + dir / "ds"),
              std::string::npos) << source.status();
    EXPECT_NE(source.status().message().find(dir / "ds/train"), std::string::npos);
  }
  testing::WriteFile(dir / "bin/a.txt", "text");
  testing::WriteFile(dir / "bin/b.dat", std::string("ab\0cd", 5));
  auto binary = OpenBatchSource(dir / "bin", 1);
  ASSERT_FALSE(binary.ok());
  EXPECT_NE(binary.status().message().find(dir / "bin/b.dat is not a text file (NUL byte at offset 2)"),
            std::string::npos) << binary.status();
  auto text = OpenBatchSource(dir / "bin/a.txt", 1);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_NE((*text)->Describe().find("the raw bytes of 1 text files (byte-level, vocab 257; not a "
                                     "prepared dataset)"),
            std::string::npos) << (*text)->Describe();
  EXPECT_EQ((*text)->tokenizer_hash(), 0u);
}

TEST(ShardSourceTest, CheckSeqLenAndTheTokenizerIdentityOfEverySource) {
  ScratchDir dir;
  testing::WriteShards(dir / "ds", testing::RandomTokens(100, 500, 3), 500, 600, kHash);
  auto source = OpenBatchSource(dir / "ds", 1);
  ASSERT_TRUE(source.ok());
  EXPECT_EQ((*source)->tokenizer_hash(), kHash);
  EXPECT_TRUE((*source)->CheckSeqLen(99).ok());  // 100 tokens: one sample of 99 + 1
  const absl::Status s = (*source)->CheckSeqLen(100);
  EXPECT_NE(s.message().find("100 tokens, fewer than one sample of train.seq_len + 1 = 101"),
            std::string::npos) << s;
}

}  // namespace
}  // namespace sb
