// safetensors reader and writer: round trips of every dtype, conversions on
// read and on write, alignment and atomic replacement, and files written by
// Hugging Face's own `safetensors` package (tests/testdata/safetensors/,
// regenerate with tests/reference/make_safetensors_fixtures.py).
#include "moe/io/safetensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moe/io/half.h"
#include "moe/ops/ops.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;
using testing::TestDataPath;

template <typename T>
std::vector<T> Values(const Tensor& t) {
  std::vector<T> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.raw(), t.nbytes());
  return out;
}

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

Tensor Bf16Of(const std::vector<float>& v, const Shape& shape) {
  Tensor out = Tensor::Empty(shape, DType::kBF16);
  ops::Convert(Tensor::FromVector(v, shape), out);
  return out;
}

std::unique_ptr<SafetensorsFile> OpenOrDie(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *std::move(f) : nullptr;
}

Tensor Read(const SafetensorsFile& f, const std::string& name, DType dtype) {
  absl::StatusOr<SafetensorsTensorInfo> info = f.Info(name);
  EXPECT_TRUE(info.ok()) << info.status();
  Tensor t = Tensor::Empty(info->shape, dtype);
  absl::Status s = f.ReadInto(name, t);
  EXPECT_TRUE(s.ok()) << s;
  return t;
}

TEST(Safetensors, RoundTripEveryDTypeBitwise) {
  TempDir dir;
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", Tensor::FromVector<float>({1.5f, -0.1f, 3e-39f, INFINITY, -0.0f, 7.0f}, {2, 3})},
      {"f64", Tensor::FromVector<double>({0.1, -1e300, 5e-324}, {3})},
      {"bf16", Bf16Of({1.0f, -2.5f, 0.1f, 1e30f}, {2, 1, 2})},
      {"i32", Tensor::FromVector<int32_t>({-2147483647 - 1, 0, 2147483647}, {3})},
      {"i64", Tensor::FromVector<int64_t>({INT64_MIN, -1, INT64_MAX, 42}, {4, 1})},
      {"scalar", Tensor::FromVector<float>({2.0f}, {})},
      {"empty", Tensor::Empty({0, 5}, DType::kF64)},
  };
  const std::map<std::string, std::string> metadata = {{"step", "12"}, {"note", "ünïcode"}};
  const std::string path = dir.Path("all.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());

  auto f = OpenOrDie(path);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->metadata(), metadata);
  EXPECT_THAT(f->names(),
              ::testing::ElementsAre("bf16", "empty", "f32", "f64", "i32", "i64", "scalar"));
  for (const auto& [name, t] : tensors) {
    const SafetensorsTensorInfo info = *f->Info(name);
    EXPECT_EQ(info.dtype, SafetensorsDTypeOf(t.dtype())) << name;
    EXPECT_EQ(info.shape, t.shape()) << name;
    EXPECT_TRUE(SameBytes(Read(*f, name, t.dtype()), t)) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Safetensors, EveryTensorIsAlignedToItsElementSize) {
  TempDir dir;
  const std::string path = dir.Path("a.safetensors");
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"b", Bf16Of({1, 2, 3}, {3})},
                                {"h", Tensor::FromVector<int32_t>({1}, {1})},
                                {"d", Tensor::FromVector<double>({1, 2}, {2})},
                                {"f", Tensor::FromVector<float>({1, 2, 3}, {3})}},
                               {}, std::nullopt)
                  .ok());
  const std::string bytes = testing::ReadBytes(path);
  absl::StatusOr<SafetensorsHeader> h =
      ParseSafetensorsHeader(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->data_start % 8, 0u);
  for (const SafetensorsTensorInfo& t : h->tensors)
    EXPECT_EQ(t.begin % SafetensorsDTypeSize(t.dtype), 0u) << t.name;
  // Contiguous, no trailing bytes: Python's reader insists on both.
  uint64_t total = 0;
  for (const SafetensorsTensorInfo& t : h->tensors) total += t.end - t.begin;
  EXPECT_EQ(h->data_start + total, bytes.size());
}

TEST(Safetensors, FloatStorageConvertsOnWrite) {
  TempDir dir;
  const std::string path = dir.Path("c.safetensors");
  const Tensor f64 = Tensor::FromVector<double>({0.1, -3.0, 65504.0, 1e-7}, {2, 2});
  const Tensor ids = Tensor::FromVector<int32_t>({5, 6}, {2});
  for (SafetensorsDType storage : {SafetensorsDType::kF16, SafetensorsDType::kBF16,
                                   SafetensorsDType::kF32, SafetensorsDType::kF64}) {
    SCOPED_TRACE(SafetensorsDTypeName(storage));
    ASSERT_TRUE(WriteSafetensors(path, {{"w", f64}, {"ids", ids}}, {}, storage).ok());
    auto f = OpenOrDie(path);
    EXPECT_EQ(f->Info("w")->dtype, storage);
    EXPECT_EQ(f->Info("ids")->dtype, SafetensorsDType::kI32);  // integers never convert
    EXPECT_TRUE(SameBytes(Read(*f, "ids", DType::kI32), ids));
    const std::vector<double> got = Read(*f, "w", DType::kF64).ToDoubles();
    const std::vector<double> want = f64.ToDoubles();
    for (size_t i = 0; i < want.size(); ++i) {
      double expected = want[i];
      if (storage == SafetensorsDType::kF16)
        expected = HalfToFloat(FloatToHalf(static_cast<float>(want[i])));
      if (storage == SafetensorsDType::kBF16)
        expected = Bf16Of({float(want[i])}, {1}).ToDoubles()[0];
      if (storage == SafetensorsDType::kF32) expected = static_cast<float>(want[i]);
      EXPECT_EQ(got[i], expected) << i;
    }
  }
  EXPECT_FALSE(WriteSafetensors(path, {{"w", f64}}, {}, SafetensorsDType::kI32).ok());
}

TEST(Safetensors, ReadConvertsFloatsAndRefusesOtherMismatches) {
  TempDir dir;
  const std::string path = dir.Path("r.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"w", Tensor::FromVector<double>({0.1, 1.0 / 3.0}, {2})},
                                      {"i", Tensor::FromVector<int32_t>({1, 2}, {2})}})
                  .ok());
  auto f = OpenOrDie(path);
  EXPECT_EQ(Values<float>(Read(*f, "w", DType::kF32)),
            (std::vector<float>{0.1f, static_cast<float>(1.0 / 3.0)}));
  EXPECT_TRUE(SameBytes(Read(*f, "w", DType::kBF16), Bf16Of({0.1f, 1.0f / 3.0f}, {2})));

  auto expect_error = [&](const std::string& name, const Tensor& dst, const std::string& part) {
    const absl::Status s = f->ReadInto(name, dst);
    EXPECT_FALSE(s.ok()) << name;
    EXPECT_THAT(std::string(s.message()), HasSubstr(path));
    EXPECT_THAT(std::string(s.message()), HasSubstr("'" + name + "'"));
    EXPECT_THAT(std::string(s.message()), HasSubstr(part));
  };
  expect_error("w", Tensor::Empty({3}), "shape [2] in the file, [3] expected");
  expect_error("w", Tensor::Empty({2, 1}), "shape");
  expect_error("w", Tensor::Empty({2}, DType::kI32), "F64 in the file cannot be read into i32");
  expect_error("i", Tensor::Empty({2}, DType::kI64), "I32 in the file cannot be read into i64");
  expect_error("i", Tensor::Empty({2}), "cannot be read into f32");
  expect_error("nope", Tensor::Empty({2}), "no tensor");
  expect_error("w", Tensor(), "undefined");
}

TEST(Safetensors, WriterReplacesAtomicallyAndKeepsTheOldFileOnError) {
  TempDir dir;
  const std::string path = dir.Path("ckpt.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"a", Tensor::FromVector<float>({1}, {1})}}).ok());
  const std::string before = testing::ReadBytes(path);

  const Tensor x = Tensor::FromVector<float>({2}, {1});
  absl::Status s = WriteSafetensors(path, {{"a", x}, {"a", x}});
  EXPECT_THAT(std::string(s.message()), HasSubstr("'a': given twice"));
  EXPECT_FALSE(WriteSafetensors(path, {{"__metadata__", x}}).ok());
  EXPECT_FALSE(WriteSafetensors(path, {{"", x}}).ok());
  EXPECT_FALSE(WriteSafetensors(path, {{"u", Tensor()}}).ok());
  EXPECT_FALSE(WriteSafetensors(path, {{"\xff\xfe", x}}).ok());  // not UTF-8
  EXPECT_FALSE(WriteSafetensors(path, {{"a", x}}, {{"k", "\xc3"}}).ok());
  EXPECT_EQ(testing::ReadBytes(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  s = WriteSafetensors(dir.Path("no/such/dir/x.safetensors"), {{"a", x}});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("no/such/dir/x.safetensors.tmp"));

  // A stale temp file from a killed writer is simply overwritten.
  testing::WriteBytes(path + ".tmp", "garbage");
  ASSERT_TRUE(WriteSafetensors(path, {{"a", x}}).ok());
  EXPECT_EQ(Values<float>(Read(*OpenOrDie(path), "a", DType::kF32)), std::vector<float>{2});
}

TEST(Safetensors, OpenErrorsNameThePath) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(dir.Path("missing"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr(dir.Path("missing")));
  f = SafetensorsFile::Open(dir.path());
  EXPECT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("not a regular file"));
}

// ------------------------------------------------ files written by Python

TEST(SafetensorsPython, ReadsEveryDTypeWrittenBySafetensorsNumpy) {
  auto f = OpenOrDie(TestDataPath("safetensors/dtypes.safetensors"));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->metadata().at("producer"), "make_safetensors_fixtures.py");
  std::vector<double> f64(6), f32(6);
  for (int i = 0; i < 6; ++i) {
    f64[i] = i * 0.25 - 1.0;
    f32[i] = i * 0.5 - 1.0;
  }
  EXPECT_EQ(f->Info("f64")->shape, (Shape{2, 3}));
  EXPECT_EQ(Values<double>(Read(*f, "f64", DType::kF64)), f64);
  EXPECT_EQ(f->Info("f32")->shape, (Shape{3, 2}));
  EXPECT_EQ(Read(*f, "f32", DType::kF32).ToDoubles(), f32);
  EXPECT_EQ(Values<int64_t>(Read(*f, "i64", DType::kI64)),
            (std::vector<int64_t>{-(int64_t{1} << 40), 7, 0, int64_t{1} << 62}));
  EXPECT_EQ(Values<int32_t>(Read(*f, "i32", DType::kI32)),
            (std::vector<int32_t>{-5, 0, 2147483647}));
  EXPECT_EQ(f->Info("scalar")->shape, Shape{});
  EXPECT_EQ(Values<float>(Read(*f, "scalar", DType::kF32)), std::vector<float>{3.5f});
  EXPECT_EQ(f->Info("empty")->shape, (Shape{0, 3}));
  EXPECT_EQ(Read(*f, "empty", DType::kF32).numel(), 0);
  // F16 decoded by us equals numpy's own decoding, bit for bit (incl. -0).
  EXPECT_EQ(f->Info("f16")->dtype, SafetensorsDType::kF16);
  EXPECT_TRUE(SameBytes(Read(*f, "f16", DType::kF32), Read(*f, "f16_as_f32", DType::kF32)));
  EXPECT_EQ(Read(*f, "f16", DType::kF64).ToDoubles(),
            Read(*f, "f16_as_f32", DType::kF64).ToDoubles());
}

TEST(SafetensorsPython, ReadsBf16WrittenByTheRustSerializer) {
  auto f = OpenOrDie(TestDataPath("safetensors/bf16.safetensors"));
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_EQ(f->Info("bf16")->dtype, SafetensorsDType::kBF16);
  EXPECT_TRUE(
      SameBytes(Read(*f, "bf16", DType::kBF16), Bf16Of({1.0f, -1.5f, 3.140625f, 1e-3f}, {2, 2})));
  EXPECT_EQ(Read(*f, "bf16", DType::kF32).ToDoubles()[2], 3.140625);
}

// ------------------------------------------------------------- f16 codec

TEST(Half, MatchesNumpyBitForBit) {
  auto f = OpenOrDie(TestDataPath("safetensors/half_rounding.safetensors"));
  ASSERT_NE(f, nullptr);
  const std::vector<float> src = Values<float>(Read(*f, "src", DType::kF32));
  // The F16 tensors' raw bits, straight from the file bytes.
  const std::string bytes = testing::ReadBytes(f->path());
  const absl::StatusOr<SafetensorsHeader> h =
      ParseSafetensorsHeader("", reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  auto bits_of = [&](const SafetensorsTensorInfo& t) {
    std::vector<uint16_t> v((t.end - t.begin) / 2);
    std::memcpy(v.data(), bytes.data() + h->data_start + t.begin, v.size() * 2);
    return v;
  };
  const std::vector<uint16_t> numpy = bits_of(*f->Info("numpy_f16"));
  ASSERT_EQ(numpy.size(), src.size());
  for (size_t i = 0; i < src.size(); ++i)
    EXPECT_EQ(FloatToHalf(src[i]), numpy[i]) << "src[" << i << "] = " << src[i];

  const std::vector<uint16_t> halves = bits_of(*f->Info("half_bits"));
  const std::vector<float> decoded = Values<float>(Read(*f, "half_bits_as_f32", DType::kF32));
  for (size_t i = 0; i < halves.size(); ++i) {
    const float ours = HalfToFloat(halves[i]);
    if (std::isnan(decoded[i])) {
      EXPECT_TRUE(std::isnan(ours)) << std::hex << halves[i];
    } else {
      EXPECT_EQ(std::memcmp(&ours, &decoded[i], 4), 0) << std::hex << halves[i];
    }
  }
}

TEST(Half, EveryHalfSurvivesARoundTripThroughFloat) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_EQ(FloatToHalf(f) & 0x7c00u, 0x7c00u);
      EXPECT_NE(FloatToHalf(f) & 0x3ffu, 0u);
    } else {
      ASSERT_EQ(FloatToHalf(f), h) << std::hex << h;
    }
  }
}

}  // namespace
}  // namespace sb
