// Per-tensor checksums in safetensors files (docs/formats.md, "Checksums"):
// the writer records XXH3-64 of each tensor's bytes as written, and every
// read verifies them, so bytes changed inside the data section (header
// intact) are an error naming the file and tensor instead of a silent load.
#include "moe/io/checksum.h"

#include <cstring>
#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moe/io/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tests/testing/safetensors_bytes.h"

namespace sb {
namespace {

using ::testing::HasSubstr;
using testing::ReadBytes;
using testing::TempDir;
using testing::WriteBytes;

TEST(Checksum, Xxh3OfTheEmptyInputIsTheSpecsValue) {
  // XXH3_64bits("") from xxHash's specification (doc/xxhash_spec.md).
  EXPECT_EQ(Xxh3_64("", 0), 0x2D06800538D394C2ULL);
  EXPECT_EQ(ChecksumHex(0x2D06800538D394C2ULL), "2d06800538d394c2");
  EXPECT_EQ(ChecksumHex(1), "0000000000000001");
  const char a[] = "switchboard", b[] = "switchboarD";
  EXPECT_NE(Xxh3_64(a, sizeof(a)), Xxh3_64(b, sizeof(b)));
}

// Two tensors of the same size (so their ranges can be swapped) and a third.
std::vector<std::pair<std::string, Tensor>> Sample() {
  std::vector<float> a(12), b(12);
  for (int i = 0; i < 12; ++i) {
    a[i] = 0.25f * static_cast<float>(i) - 1.0f;
    b[i] = 3.0f - 0.5f * static_cast<float>(i);
  }
  return {{"alpha", Tensor::FromVector(a, {3, 4})},
          {"beta", Tensor::FromVector(b, {4, 3})},
          {"ids", Tensor::FromVector(std::vector<int32_t>{7, -1, 42}, {3})}};
}

using testing::ReadSafetensorsHeader;
using testing::TensorDataRange;
using testing::WithSafetensorsHeader;

// File offset of tensor `name`'s first data byte.
size_t DataOffset(const std::string& bytes, const std::string& name) {
  return TensorDataRange(bytes, name).first;
}

class ChecksummedFile : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteSafetensors(path_, Sample(), {{"format", "pt"}}, std::nullopt,
                                 SafetensorsChecksums::kXxh3)
                    .ok());
    bytes_ = ReadBytes(path_);
  }
  // Opens `bytes` and reads `name` into a fresh tensor of its shape.
  absl::Status Read(const std::string& bytes, const std::string& name) {
    WriteBytes(path_, bytes);
    auto file = SafetensorsFile::Open(path_);
    if (!file.ok()) return file.status();
    auto info = (*file)->Info(name);
    if (!info.ok()) return info.status();
    Tensor dst = Tensor::Zeros(info->shape, name == "ids" ? DType::kI32 : DType::kF32);
    return (*file)->ReadInto(name, dst);
  }

  TempDir dir_;
  std::string path_ = dir_.Path("w.safetensors");
  std::string bytes_;
};

TEST_F(ChecksummedFile, RecordsTheHashOfEachTensorsBytesAndReadsBack) {
  const auto meta = ReadSafetensorsHeader(bytes_).json["__metadata__"];
  EXPECT_EQ(meta["checksum"], "xxh3_64");
  EXPECT_EQ(meta["format"], "pt");
  for (const auto& [name, tensor] : Sample()) {
    const size_t at = DataOffset(bytes_, name);
    EXPECT_EQ(meta["checksum." + name], ChecksumHex(Xxh3_64(bytes_.data() + at, tensor.nbytes())))
        << name;
  }
  auto file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->checksummed());
  EXPECT_TRUE((*file)->VerifyChecksums().ok());
  for (const auto& [name, tensor] : Sample()) {
    Tensor dst = Tensor::Zeros(tensor.shape(), tensor.dtype());
    ASSERT_TRUE((*file)->ReadInto(name, dst).ok()) << name;
    EXPECT_EQ(std::memcmp(dst.raw(), tensor.raw(), tensor.nbytes()), 0) << name;
  }
}

TEST_F(ChecksummedFile, FlippedExponentBitIsAnErrorNamingFileAndTensor) {
  std::string bad = bytes_;
  bad[DataOffset(bytes_, "beta") + 4 * 5 + 3] ^= 0x40;  // element 5's top exponent bit
  WriteBytes(path_, bad);
  auto file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << "the header is intact";
  Tensor dst = Tensor::Zeros({4, 3});
  for (int i = 0; i < 12; ++i) dst.data<float>()[i] = 9.0f;
  const absl::Status s = (*file)->ReadInto("beta", dst);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(path_ + ": tensor 'beta': checksum mismatch"));
  EXPECT_EQ(dst.data<float>()[5], 9.0f) << "a failed read wrote into the destination";
  EXPECT_TRUE(Read(bad, "alpha").ok()) << "other tensors still read";
  EXPECT_THAT((*file)->VerifyChecksums().message(), HasSubstr("'beta': checksum mismatch"));
}

TEST_F(ChecksummedFile, ZeroedDataIsAnError) {
  std::string bad = bytes_;
  const size_t at = DataOffset(bytes_, "alpha");
  std::memset(&bad[at], 0, 12 * sizeof(float));
  EXPECT_THAT(Read(bad, "alpha").message(), HasSubstr("'alpha': checksum mismatch"));
}

TEST_F(ChecksummedFile, SwappedOffsetsOfTwoSameSizeTensorsAreAnError) {
  nlohmann::json header = ReadSafetensorsHeader(bytes_).json;
  std::swap(header["alpha"]["data_offsets"], header["beta"]["data_offsets"]);
  const std::string bad = WithSafetensorsHeader(bytes_, header);
  EXPECT_THAT(Read(bad, "alpha").message(), HasSubstr("'alpha': checksum mismatch"));
  EXPECT_THAT(Read(bad, "beta").message(), HasSubstr("'beta': checksum mismatch"));
}

TEST_F(ChecksummedFile, MalformedChecksumMetadataIsRejectedAtOpen) {
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"unknown algorithm", [](nlohmann::json& h) { h["__metadata__"]["checksum"] = "md5"; },
       "__metadata__.checksum = 'md5' is not a checksum this build knows"},
      {"a tensor without one", [](nlohmann::json& h) { h["__metadata__"].erase("checksum.beta"); },
       "tensor 'beta': no checksum"},
      {"checksums without the marker", [](nlohmann::json& h) { h["__metadata__"].erase("checksum"); },
       "but no \"checksum\" entry"},
      {"not hex", [](nlohmann::json& h) { h["__metadata__"]["checksum.ids"] = "XYZ"; },
       "tensor 'ids': checksum 'XYZ' is not 16 lowercase hex digits"},
      {"a checksum of no tensor",
       [](nlohmann::json& h) { h["__metadata__"]["checksum.gamma"] = "0000000000000000"; },
       "a checksum for 'gamma', which is not a tensor"},
  };
  for (const Case& c : cases) {
    nlohmann::json header = ReadSafetensorsHeader(bytes_).json;
    c.edit(header);
    WriteBytes(path_, WithSafetensorsHeader(bytes_, header));
    auto file = SafetensorsFile::Open(path_);
    ASSERT_FALSE(file.ok()) << c.what;
    EXPECT_THAT(file.status().message(), HasSubstr(c.message)) << c.what;
  }
}

TEST(Checksums, ConvertedStorageIsHashedAsWrittenAndReservedKeysAreRefused) {
  TempDir dir;
  const std::string path = dir.Path("h.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, Sample(), {}, SafetensorsDType::kF16,
                               SafetensorsChecksums::kXxh3)
                  .ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE((*file)->VerifyChecksums().ok());
  const absl::Status s = WriteSafetensors(dir.Path("r.safetensors"), Sample(),
                                          {{"checksum.alpha", "x"}}, std::nullopt,
                                          SafetensorsChecksums::kXxh3);
  EXPECT_THAT(s.message(), HasSubstr("metadata key 'checksum.alpha' is reserved"));
}

TEST(Checksums, FilesWithoutThemStillReadUnverified) {
  TempDir dir;
  const std::string path = dir.Path("plain.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, Sample()).ok());
  std::string bytes = ReadBytes(path);
  EXPECT_EQ(ReadSafetensorsHeader(bytes).json.count("__metadata__"), 0u);
  bytes[DataOffset(bytes, "alpha")] ^= 1;
  WriteBytes(path, bytes);
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_FALSE((*file)->checksummed());
  EXPECT_TRUE((*file)->VerifyChecksums().ok());
  Tensor dst = Tensor::Zeros({3, 4});
  EXPECT_TRUE((*file)->ReadInto("alpha", dst).ok());
}

}  // namespace
}  // namespace sb
