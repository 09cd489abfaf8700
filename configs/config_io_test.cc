// Tests of ParseConfigText, LoadConfigFile and ResolvedConfigText
// (configs/config_io.cc): errors carry file:line:col and the offending name;
// the resolved text spells every default and parses back to the same config.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "configs/config.h"
#include "google/protobuf/util/message_differencer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sb {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

// True when every singular field of `m` and its sub-messages is explicitly set.
bool AllSingularFieldsSet(const google::protobuf::Message& m) {
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (f->is_repeated()) continue;
    if (!r->HasField(m, f)) {
      ADD_FAILURE() << f->full_name() << " is not explicit";
      return false;
    }
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE &&
        !AllSingularFieldsSet(r->GetMessage(m, f))) {
      return false;
    }
  }
  return true;
}

std::string WriteTempFile(const std::string& text) {
  char path[] = "/tmp/sb_config_testXXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  return path;
}

TEST(ParseConfigText, ReadsNestedAndRepeatedFields) {
  auto config = ParseConfigText(
      "model { d_model: 64 num_layers: 6 }\n"
      "moe { moe_layers: 1 moe_layers: 3 }\n"
      "optimizer { name: ADAFACTOR lr: 1e-2 }\n"
      "data { train_path: \"a/b\" }\n",
      "test.textproto");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model().d_model(), 64);
  EXPECT_EQ(config->model().num_layers(), 6);
  EXPECT_EQ(config->model().num_heads(), 8);  // default
  ASSERT_EQ(config->moe().moe_layers_size(), 2);
  EXPECT_EQ(config->moe().moe_layers(1), 3);
  EXPECT_EQ(config->optimizer().name(), switchboard::OptimizerConfig::ADAFACTOR);
  EXPECT_DOUBLE_EQ(config->optimizer().lr(), 1e-2);
  EXPECT_EQ(config->data().train_path(), "a/b");
}

TEST(ParseConfigText, EmptyTextIsAllDefaults) {
  auto config = ParseConfigText("# only a comment\n", "empty.textproto");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*config, TrainConfig()));
}

TEST(ParseConfigText, UnknownFieldIsRejectedByName) {
  auto config = ParseConfigText("model {\n  d_modle: 64\n}\n", "bad.textproto");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("bad.textproto:2:"));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("d_modle"));
}

TEST(ParseConfigText, SyntaxErrorHasLineAndColumn) {
  auto config = ParseConfigText("model { d_model: 64 }\ntrain {\n  steps: 10\n\n", "cut.textproto");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("cut.textproto:5:"));

  config = ParseConfigText("train {\n  steps: abc\n}\n", "type.textproto");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("type.textproto:2:10:"));
}

TEST(ParseConfigText, SingularFieldTwiceIsAnError) {
  auto config = ParseConfigText("train { steps: 1 steps: 2 }", "twice.textproto");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("steps"));
}

TEST(LoadConfigFile, ReadsAFileAndPrefixesErrorsWithItsPath) {
  const std::string good = WriteTempFile("train { steps: 7 }\n");
  auto config = LoadConfigFile(good);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->train().steps(), 7);
  std::remove(good.c_str());

  const std::string bad = WriteTempFile("train { stepz: 7 }\n");
  config = LoadConfigFile(bad);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(bad + ":1:"));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("stepz"));
  std::remove(bad.c_str());
}

TEST(LoadConfigFile, MissingFileAndDirectoryAreErrors) {
  auto config = LoadConfigFile("/nonexistent/sb.textproto");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("/nonexistent/sb.textproto"));

  config = LoadConfigFile("/tmp");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("/tmp"));
}

TEST(LoadConfigFile, EndlessOrHugeFilesAreRefusedNotRead) {
  // /dev/zero used to end in std::bad_alloc; a config file is a few KiB.
  auto config = LoadConfigFile("/dev/zero");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("config file /dev/zero is larger than 1048576 bytes"));
  // A comment-only (valid) config at the bound loads; one byte more does not.
  const std::string at = WriteTempFile(std::string(kMaxConfigFileBytes, '#'));
  EXPECT_TRUE(LoadConfigFile(at).ok());
  std::remove(at.c_str());
  const std::string above = WriteTempFile(std::string(kMaxConfigFileBytes + 1, '#'));
  EXPECT_FALSE(LoadConfigFile(above).ok());
  std::remove(above.c_str());
}

TEST(ResolvedConfigText, SpellsEveryDefaultAndRoundTrips) {
  TrainConfig config;
  config.mutable_model()->set_d_model(96);
  config.mutable_moe()->add_moe_layers(2);
  config.mutable_optimizer()->set_lr(0.1 + 0.2);  // not exactly 0.3: must survive printing
  const std::string text = ResolvedConfigText(config);
  EXPECT_THAT(text, HasSubstr("rope_theta: 10000"));
  EXPECT_THAT(text, HasSubstr("kind: COSINE"));
  EXPECT_THAT(text, HasSubstr("train_path: \"\""));

  auto parsed = ParseConfigText(text, "resolved");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(AllSingularFieldsSet(*parsed));
  // Same values as the input with defaults filled in, doubles bit-exact.
  EXPECT_TRUE(MessageDifferencer::Equivalent(*parsed, config));
  EXPECT_EQ(parsed->optimizer().lr(), 0.1 + 0.2);
  ASSERT_EQ(parsed->moe().moe_layers_size(), 1);
  // Resolving is idempotent.
  EXPECT_EQ(ResolvedConfigText(*parsed), text);
}

}  // namespace
}  // namespace sb
