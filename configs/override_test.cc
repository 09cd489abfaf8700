// Tests of ApplyOverride (configs/override.cc): every value form of `--set`,
// and that every bad assignment names its path and leaves the config as it was.
#include <string>

#include "configs/config.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace sb {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

// Applies `assignment` to `config`; expects it to fail without changing it,
// and returns the error message.
std::string ExpectRejected(const std::string& assignment, TrainConfig* config) {
  const TrainConfig before = *config;
  const absl::Status status = ApplyOverride(assignment, config);
  EXPECT_FALSE(status.ok()) << assignment;
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << assignment;
  EXPECT_TRUE(MessageDifferencer::Equals(before, *config)) << assignment << " changed the config";
  return std::string(status.message());
}

TEST(ApplyOverride, SetsNestedScalars) {
  TrainConfig config;
  ASSERT_TRUE(ApplyOverride("model.d_model=256", &config).ok());
  EXPECT_EQ(config.model().d_model(), 256);
  ASSERT_TRUE(ApplyOverride(" train.steps = 42 ", &config).ok());
  EXPECT_EQ(config.train().steps(), 42);
  ASSERT_TRUE(ApplyOverride("optimizer.lr=1e-3", &config).ok());
  EXPECT_DOUBLE_EQ(config.optimizer().lr(), 1e-3);
  ASSERT_TRUE(ApplyOverride("train.seed=18446744073709551615", &config).ok());
  EXPECT_EQ(config.train().seed(), 18446744073709551615ull);
}

TEST(ApplyOverride, SetsEnumsByName) {
  TrainConfig config;
  ASSERT_TRUE(ApplyOverride("optimizer.name=ADAFACTOR", &config).ok());
  EXPECT_EQ(config.optimizer().name(), switchboard::OptimizerConfig::ADAFACTOR);
  ASSERT_TRUE(ApplyOverride("train.device=CUDA", &config).ok());
  ASSERT_TRUE(ApplyOverride("train.device=CPU", &config).ok());
  EXPECT_EQ(config.train().device(), switchboard::TrainLoopConfig::CPU);
  EXPECT_TRUE(config.train().has_device());
  ASSERT_TRUE(ApplyOverride("schedule.kind=inverse_sqrt", &config).ok());
  EXPECT_EQ(config.schedule().kind(), switchboard::ScheduleConfig::INVERSE_SQRT);

  const std::string message = ExpectRejected("optimizer.name=SGD", &config);
  EXPECT_THAT(message, HasSubstr("optimizer.name"));
  EXPECT_THAT(message, HasSubstr("ADAMW, ADAFACTOR"));
  ExpectRejected("optimizer.name=1", &config);  // numbers are not names
}

TEST(ApplyOverride, SetsBools) {
  TrainConfig config;
  ASSERT_TRUE(ApplyOverride("moe.normalize_top_k=true", &config).ok());
  EXPECT_TRUE(config.moe().normalize_top_k());
  ASSERT_TRUE(ApplyOverride("moe.normalize_top_k=0", &config).ok());
  EXPECT_FALSE(config.moe().normalize_top_k());
  ASSERT_TRUE(ApplyOverride("moe.normalize_top_k=1", &config).ok());
  EXPECT_TRUE(config.moe().normalize_top_k());
  ASSERT_TRUE(ApplyOverride("moe.normalize_top_k=false", &config).ok());
  EXPECT_FALSE(config.moe().normalize_top_k());
  EXPECT_THAT(ExpectRejected("moe.normalize_top_k=yes", &config), HasSubstr("moe.normalize_top_k"));
}

TEST(ApplyOverride, SetsStringsRaw) {
  TrainConfig config;
  ASSERT_TRUE(ApplyOverride("data.train_path=runs/data/x=1", &config).ok());
  EXPECT_EQ(config.data().train_path(), "runs/data/x=1");  // split at the first '='
  ASSERT_TRUE(ApplyOverride("data.val_path=", &config).ok());
  EXPECT_TRUE(config.data().has_val_path());
  EXPECT_EQ(config.data().val_path(), "");
}

TEST(ApplyOverride, RepeatedFieldTakesAListAndReplacesIt) {
  TrainConfig config;
  config.mutable_moe()->add_moe_layers(0);
  config.mutable_moe()->add_moe_layers(2);
  config.mutable_moe()->add_moe_layers(5);
  ASSERT_TRUE(ApplyOverride("moe.moe_layers=1,3", &config).ok());
  ASSERT_EQ(config.moe().moe_layers_size(), 2);
  EXPECT_EQ(config.moe().moe_layers(0), 1);
  EXPECT_EQ(config.moe().moe_layers(1), 3);
  ASSERT_TRUE(ApplyOverride("moe.moe_layers= 4 , 6 ,7", &config).ok());
  EXPECT_EQ(config.moe().moe_layers_size(), 3);
  EXPECT_EQ(config.moe().moe_layers(2), 7);

  const std::string message = ExpectRejected("moe.moe_layers=1,x", &config);
  EXPECT_THAT(message, HasSubstr("moe.moe_layers"));
  EXPECT_THAT(message, HasSubstr("'x'"));
  ExpectRejected("moe.moe_layers=1,,2", &config);
}

TEST(ApplyOverride, EmptyValueClearsARepeatedField) {
  TrainConfig config;
  config.mutable_moe()->add_moe_layers(1);
  ASSERT_TRUE(ApplyOverride("moe.moe_layers=", &config).ok());
  EXPECT_EQ(config.moe().moe_layers_size(), 0);
}

TEST(ApplyOverride, UnknownPathIsNamed) {
  TrainConfig config;
  std::string message = ExpectRejected("moe.topk=2", &config);
  EXPECT_THAT(message, HasSubstr("moe.topk"));
  EXPECT_THAT(message, HasSubstr("top_k"));  // lists the fields that exist
  EXPECT_THAT(ExpectRejected("modle.d_model=1", &config), HasSubstr("modle"));
  EXPECT_THAT(ExpectRejected("moe..top_k=1", &config), HasSubstr("moe..top_k"));
  EXPECT_THAT(ExpectRejected("=1", &config), HasSubstr("empty"));
  EXPECT_THAT(ExpectRejected("moe.top_k", &config), HasSubstr("path=value"));
  // A failed walk must not leave an empty sub-message behind.
  EXPECT_FALSE(config.has_data());
  ExpectRejected("data.nope=1", &config);
  EXPECT_FALSE(config.has_data());
}

TEST(ApplyOverride, PathThroughAScalarIsAnError) {
  TrainConfig config;
  const std::string message = ExpectRejected("train.steps.value=1", &config);
  EXPECT_THAT(message, HasSubstr("'train.steps' is not a message"));
}

TEST(ApplyOverride, SettingAMessageIsAnError) {
  TrainConfig config;
  const std::string message = ExpectRejected("moe=1", &config);
  EXPECT_THAT(message, HasSubstr("'moe' is a message"));
  EXPECT_THAT(message, HasSubstr("num_experts"));
}

TEST(ApplyOverride, BadValuesNameFieldAndValue) {
  TrainConfig config;
  std::string message = ExpectRejected("train.steps=abc", &config);
  EXPECT_THAT(message, HasSubstr("train.steps"));
  EXPECT_THAT(message, HasSubstr("'abc'"));
  message = ExpectRejected("train.micro_batch_size=3000000000", &config);
  EXPECT_THAT(message, HasSubstr("train.micro_batch_size"));
  EXPECT_THAT(message, HasSubstr("int32"));
  EXPECT_THAT(ExpectRejected("train.seed=-1", &config), HasSubstr("uint64"));
  EXPECT_THAT(ExpectRejected("train.steps=1.5", &config), HasSubstr("train.steps"));
  EXPECT_THAT(ExpectRejected("optimizer.lr=fast", &config), HasSubstr("optimizer.lr"));
  EXPECT_THAT(ExpectRejected("model.d_model=", &config), HasSubstr("model.d_model"));
}

}  // namespace
}  // namespace sb
