// SafetensorsSet: a single file, a directory with model.safetensors, and
// Hugging Face sharded checkpoints (index.json) — the committed one written
// by Python and ones we write — plus every broken index we could think of.
#include "moe/io/safetensors_set.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TempDir;

std::unique_ptr<SafetensorsSet> OpenOrDie(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SafetensorsSet>> s = SafetensorsSet::Open(path);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

std::vector<double> Read(const SafetensorsSet& set, const std::string& name) {
  Tensor t = Tensor::Empty(set.Info(name)->shape, DType::kF64);
  const absl::Status s = set.ReadInto(name, t);
  EXPECT_TRUE(s.ok()) << s;
  return t.ToDoubles();
}

void ExpectOpenFails(const std::string& path, const std::vector<std::string>& parts) {
  absl::StatusOr<std::unique_ptr<SafetensorsSet>> s = SafetensorsSet::Open(path);
  ASSERT_FALSE(s.ok()) << path;
  for (const std::string& part : parts)
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(part));
}

TEST(SafetensorsSet, ReadsTheShardedCheckpointWrittenByPython) {
  const std::string dir = testing::TestDataPath("safetensors/sharded");
  for (const std::string& path : {dir, dir + "/model.safetensors.index.json"}) {
    auto set = OpenOrDie(path);
    ASSERT_NE(set, nullptr);
    EXPECT_THAT(set->names(),
                ElementsAre("lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"));
    EXPECT_EQ(set->files().size(), 2u);
    std::vector<double> embed(12), head(12);
    for (int i = 0; i < 12; ++i) embed[i] = i, head[i] = -i;
    EXPECT_EQ(Read(*set, "model.embed_tokens.weight"), embed);
    EXPECT_EQ(Read(*set, "lm_head.weight"), head);
    EXPECT_EQ(Read(*set, "model.norm.weight"), std::vector<double>(3, 1.0));
    EXPECT_FALSE(set->Contains("model.layers.0.mlp.up_proj.weight"));
    const absl::Status missing = set->ReadInto("nope", Tensor::Empty({1}));
    EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(missing.message()), HasSubstr("'nope'"));
  }
}

TEST(SafetensorsSet, SingleFileAndDirectoryWithModelSafetensors) {
  TempDir dir;
  const std::string file = dir.Path(kSafetensorsSingleFile);
  ASSERT_TRUE(WriteSafetensors(file, {{"a", Tensor::FromVector<float>({1, 2}, {2})}}).ok());
  for (const std::string& path : {file, dir.path()}) {
    auto set = OpenOrDie(path);
    ASSERT_NE(set, nullptr);
    EXPECT_THAT(set->names(), ElementsAre("a"));
    EXPECT_EQ(Read(*set, "a"), (std::vector<double>{1, 2}));
  }
  std::filesystem::remove(file);
  ExpectOpenFails(dir.path(), {dir.path(), "neither model.safetensors nor"});
  ExpectOpenFails(dir.Path("absent.safetensors"), {"absent.safetensors", "No such file"});
}

TEST(SafetensorsSet, WritesAnIndexThatPythonsLayoutMatches) {
  TempDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.Path("s1.safetensors"),
                               {{"x", Tensor::FromVector<float>({1, 2, 3}, {3})},
                                {"y", Tensor::FromVector<double>({4}, {1})}})
                  .ok());
  ASSERT_TRUE(WriteSafetensors(dir.Path("s2.safetensors"),
                               {{"z", Tensor::FromVector<int32_t>({5, 6}, {2})}})
                  .ok());
  const std::string index = dir.Path(kSafetensorsIndexFile);
  ASSERT_TRUE(
      WriteSafetensorsIndex(
          index, {{"x", "s1.safetensors"}, {"y", "s1.safetensors"}, {"z", "s2.safetensors"}})
          .ok());
  const std::string text = testing::ReadBytes(index);
  EXPECT_THAT(text, HasSubstr("\"total_size\": 28"));
  EXPECT_THAT(text, HasSubstr("\"z\": \"s2.safetensors\""));
  auto set = OpenOrDie(dir.path());
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(set->names(), ElementsAre("x", "y", "z"));
  EXPECT_EQ(Read(*set, "y"), std::vector<double>{4});
  Tensor z = Tensor::Empty({2}, DType::kI32);
  ASSERT_TRUE(set->ReadInto("z", z).ok());
  EXPECT_EQ(z.ToDoubles(), (std::vector<double>{5, 6}));

  // The writer checks what it indexes.
  EXPECT_FALSE(WriteSafetensorsIndex(index, {{"x", "s2.safetensors"}}).ok());
  EXPECT_FALSE(WriteSafetensorsIndex(index, {{"x", "s3.safetensors"}}).ok());
  EXPECT_FALSE(WriteSafetensorsIndex(index, {{"x", "../s1.safetensors"}}).ok());
  EXPECT_EQ(testing::ReadBytes(index), text);  // untouched by the failures
}

TEST(SafetensorsSet, RejectsBrokenIndexes) {
  TempDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.Path("s1.safetensors"),
                               {{"x", Tensor::FromVector<float>({1}, {1})},
                                {"hidden", Tensor::FromVector<float>({2}, {1})}})
                  .ok());
  const std::string index = dir.Path("model.safetensors.index.json");
  auto expect_bad = [&](const std::string& json, const std::vector<std::string>& parts) {
    testing::WriteBytes(index, json);
    std::vector<std::string> all = parts;
    all.push_back(index);
    ExpectOpenFails(dir.path(), all);
  };
  expect_bad("{\"weight_map\": {\"x\": \"s1.safetensors\"", {"not valid UTF-8 JSON"});
  expect_bad("[]", {"not a JSON object"});
  expect_bad("{\"metadata\": {}}", {"no 'weight_map'"});
  expect_bad("{\"weight_map\": {}}", {"no 'weight_map'"});
  expect_bad("{\"weight_map\": {\"x\": 3}}", {"'x'", "other than a file name"});
  expect_bad("{\"weight_map\": {\"x\": \"/etc/passwd\"}}", {"'x'", "other than a file name"});
  expect_bad("{\"weight_map\": {\"x\": \"../s1.safetensors\"}}", {"other than a file name"});
  expect_bad("{\"weight_map\": {\"x\": \"s2.safetensors\"}}",
             {"shard of tensor 'x'", "s2.safetensors", "No such file"});
  expect_bad("{\"weight_map\": {\"x\": \"s1.safetensors\", \"y\": \"s1.safetensors\"}}",
             {"maps tensor 'y' to s1.safetensors, which does not hold it"});
  expect_bad("{\"weight_map\": {\"x\": \"s1.safetensors\", \"x\": \"s1.safetensors\"}}",
             {"'x' appears twice"});
  // A corrupt shard: the error names the index, the tensor and the shard.
  testing::WriteBytes(dir.Path("s3.safetensors"), "garbage!");
  expect_bad("{\"weight_map\": {\"x\": \"s3.safetensors\"}}",
             {"shard of tensor 'x'", "s3.safetensors", "header length"});
  // Unmapped tensors of a shard stay invisible; "metadata" may hold anything.
  testing::WriteBytes(index,
                      "{\"metadata\": {\"total_size\": 4, \"x\": [1]}, "
                      "\"weight_map\": {\"x\": \"s1.safetensors\"}}");
  auto set = OpenOrDie(index);
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(set->names(), ElementsAre("x"));
}

}  // namespace
}  // namespace sb
