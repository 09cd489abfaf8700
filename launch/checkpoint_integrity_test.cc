// Checkpoint integrity (docs/checkpoints.md, "Integrity"): bytes changed
// inside tensor data with every header intact (a flipped exponent bit, a
// zeroed tensor, two same-size tensors with swapped offsets) used to load
// without complaint; now every shard records a checksum per tensor, a load
// verifies each one, and the error names the file and tensor. A save reads
// its shards back before publishing them, so a bad write is never
// published and nothing older is pruned for it.
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/checkpoint_testing.h"
#include "moe/io/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tests/testing/safetensors_bytes.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr const char* kModelShard = "model-00001-of-00001.safetensors";
constexpr const char* kOptimizerShard = "optimizer-00001-of-00001.safetensors";

using testing::ReadSafetensorsHeader;
using testing::SaveFilled;
using testing::TensorDataRange;

absl::Status Load(const std::string& step_dir) { return testing::LoadInto(step_dir); }

class Integrity : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(SaveFilled(tmp_.Path("pristine"), 3, 1).ok()); }
  // A fresh copy of the pristine run; returns its step_3.
  std::string Copy() {
    fs::remove_all(tmp_.Path("run"));
    fs::copy(tmp_.Path("pristine"), tmp_.Path("run"), fs::copy_options::recursive);
    return CheckpointsDir(tmp_.Path("run")) + "/step_3";
  }
  testing::TempDir tmp_;
};

TEST_F(Integrity, ChangedTensorBytesFailTheLoadNamingFileAndTensor) {
  const std::string weight = "model.layers.0.mlp.up_proj.weight";  // [12, 8] f32
  {  // The top exponent bit of one element: x becomes ~x * 2^128, or inf.
    const std::string dir = Copy();
    const std::string path = dir + "/" + kModelShard;
    std::string file = testing::ReadBytes(path);
    file[TensorDataRange(file, weight).first + 4 * 7 + 3] ^= 0x40;
    testing::WriteBytes(path, file);
    const absl::Status s = Load(dir);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat(path, ": tensor '", weight, "': checksum mismatch")));
    EXPECT_THAT(VerifyCheckpoint(dir).message(), HasSubstr(weight));
  }
  {  // Optimizer state zeroed (as an untrained run's would be).
    const std::string dir = Copy();
    const std::string path = dir + "/" + kOptimizerShard;
    const std::string state = weight + ".exp_avg_sq";
    std::string file = testing::ReadBytes(path);
    const auto [at, size] = TensorDataRange(file, state);
    file.replace(at, size, std::string(size, '\0'));
    testing::WriteBytes(path, file);
    EXPECT_THAT(Load(dir).message(), HasSubstr(absl::StrCat("'", state, "': checksum mismatch")));
  }
  {  // Two tensors of one shape whose data ranges were swapped in the header.
    const std::string dir = Copy();
    const std::string path = dir + "/" + kModelShard;
    const std::string a = "model.layers.0.self_attn.k_proj.weight";  // [4, 8], as v_proj
    const std::string b = "model.layers.0.self_attn.v_proj.weight";
    const std::string file = testing::ReadBytes(path);
    nlohmann::json header = ReadSafetensorsHeader(file).json;
    ASSERT_EQ(header[a]["shape"], header[b]["shape"]);
    std::swap(header[a]["data_offsets"], header[b]["data_offsets"]);
    testing::WriteBytes(path, testing::WithSafetensorsHeader(file, header));
    const absl::Status s = Load(dir);
    EXPECT_THAT(s.message(), HasSubstr("checksum mismatch")) << s;
    EXPECT_THAT(s.message(), HasSubstr(a)) << s;
  }
}

TEST_F(Integrity, AChecksummedFormatNeedsChecksumsAndFormat1LoadsWithAWarning) {
  const std::string dir = Copy();
  const std::string path = dir + "/" + kModelShard;
  // The same shard written again without checksums (a replaced file).
  {
    auto file = SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const std::string& name : (*file)->names()) {
      Tensor t = Tensor::Zeros((*file)->Find(name)->shape);
      ASSERT_TRUE((*file)->ReadInto(name, t).ok());
      tensors.emplace_back(name, t);
    }
    ASSERT_TRUE(WriteSafetensors(path + ".plain", tensors).ok());
  }
  fs::rename(path + ".plain", path);
  EXPECT_THAT(Load(dir).message(), HasSubstr(absl::StrCat(path, ": carries no checksums, but")));
  // The same files as a format 1 checkpoint (saved before checksums): loaded
  // unverified, with a warning.
  const std::string state_path = dir + "/" + kTrainerStateFile;
  std::string state = testing::ReadBytes(state_path);
  state.replace(state.find("format_version: 2"), 17, "format_version: 1");
  testing::WriteBytes(state_path, state);
  ::testing::internal::CaptureStderr();
  const absl::Status s = Load(dir);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_THAT(err, HasSubstr("saved before checkpoints carried checksums (format_version 1)"));
}

TEST_F(Integrity, ASaveReadsItsShardsBackBeforePublishingAndPrunesNothingForABadOne) {
  const std::string run = tmp_.Path("run");
  Copy();
  // The model shard changes on its way to the disk (after the writer hashed
  // it): the read-back catches it before `latest` moves.
  CheckpointSaveOptions options;
  options.keep_last = 1;
  options.fault_hook = [&](absl::string_view at) {
    if (at == "model_written") {
      const std::string path = CheckpointsDir(run) + "/.tmp_step_4/" + kModelShard;
      std::string file = testing::ReadBytes(path);
      file[file.size() - 3] ^= 0x10;
      testing::WriteBytes(path, file);
    }
    return absl::OkStatus();
  };
  const absl::Status s = SaveFilled(run, 4, 2, options);
  EXPECT_THAT(s.message(), HasSubstr("reading the new checkpoint back"));
  EXPECT_THAT(s.message(), HasSubstr("checksum mismatch"));
  EXPECT_FALSE(fs::exists(CheckpointsDir(run) + "/step_4"));
  EXPECT_EQ(*LatestCheckpoint(run), CheckpointsDir(run) + "/step_3");
  EXPECT_TRUE(VerifyCheckpoint(CheckpointsDir(run) + "/step_3").ok()) << "step_3 was pruned or hurt";
  // A good save then publishes and prunes down to keep_last.
  options.fault_hook = nullptr;
  ASSERT_TRUE(SaveFilled(run, 4, 2, options).ok());
  EXPECT_FALSE(fs::exists(CheckpointsDir(run) + "/step_3"));
}

TEST_F(Integrity, NewestVerifiedCheckpointSkipsDamagedOnes) {
  const std::string run = tmp_.Path("run");
  Copy();
  for (int64_t step : {5, 7}) ASSERT_TRUE(SaveFilled(run, step, static_cast<uint64_t>(step)).ok());
  const std::string root = CheckpointsDir(run);
  EXPECT_EQ(NewestVerifiedCheckpoint(run, 7), root + "/step_5");
  const std::string shard = root + "/step_5/" + kOptimizerShard;
  std::string file = testing::ReadBytes(shard);
  file[file.size() - 1] ^= 1;
  testing::WriteBytes(shard, file);
  EXPECT_EQ(NewestVerifiedCheckpoint(run, 7), root + "/step_3");
  EXPECT_EQ(NewestVerifiedCheckpoint(run, 3), std::nullopt);
}

TEST_F(Integrity, ResumeFromNamesACheckpointOfThisRun) {
  const std::string run = tmp_.Path("run");
  Copy();
  const std::string root = CheckpointsDir(run);
  EXPECT_EQ(*ResolveResumeFrom(run, "step_3"), root + "/step_3");
  EXPECT_EQ(*ResolveResumeFrom(run, root + "/step_3/"), root + "/step_3");
  EXPECT_THAT(ResolveResumeFrom(run, "step_4").status().message(), HasSubstr("does not exist"));
  EXPECT_THAT(ResolveResumeFrom(run, "3").status().message(), HasSubstr("step_<N>"));
  EXPECT_THAT(ResolveResumeFrom(run, tmp_.Path("pristine") + "/checkpoints/step_3").status().message(),
              HasSubstr("expected a checkpoint of this run directory"));
}

}  // namespace
}  // namespace sb
