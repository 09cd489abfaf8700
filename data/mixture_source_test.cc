// MixtureSource: quotas match the weights in every block, each component
// reads its own sample indices 0, 1, 2, ... exactly once (so ranks stay
// disjoint), and a batch is a pure function of its index.
#include "data/mixture_source.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data/open_source.h"
#include "data/test_util.h"

namespace sb {
namespace {

using testing::ScratchDir;

constexpr uint64_t kHash = 0xfeedULL;

std::unique_ptr<ShardSource> Open(const std::string& path) {
  ShardSourceOptions options;
  options.seed = 3;
  auto s = ShardSource::Open(path, options);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

TEST(MixtureQuotasTest, LargestRemainderSumsToTotal) {
  auto q = MixtureQuotas({1, 1}, 4096);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, (std::vector<int64_t>{2048, 2048}));
  q = MixtureQuotas({1, 1, 1}, 4096);  // 1365.33 each: the first gets the extra slot
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, (std::vector<int64_t>{1366, 1365, 1365}));
  q = MixtureQuotas({0.7, 0.2, 0.1}, 4096);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ((*q)[0] + (*q)[1] + (*q)[2], 4096);
  EXPECT_NEAR((*q)[0] / 4096.0, 0.7, 1.0 / 4096);
  EXPECT_FALSE(MixtureQuotas({1, 0}, 4096).ok());
  EXPECT_FALSE(MixtureQuotas({1, -2}, 4096).ok());
  EXPECT_FALSE(MixtureQuotas({1, 1e-6}, 4096).ok());  // would never be sampled
}

class MixtureSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteShards(dir_ / "text", testing::RandomTokens(20'000, 1000, 1), 1000, 8'000, kHash);
    testing::WriteShards(dir_ / "code", testing::RandomTokens(5'000, 1000, 2), 1000, 8'000, kHash);
  }
  std::unique_ptr<MixtureSource> Make(double w_text, double w_code, uint64_t seed = 11) {
    std::vector<MixtureComponent> c;
    c.push_back({Open(dir_ / "text"), w_text});
    c.push_back({Open(dir_ / "code"), w_code});
    auto mix = MixtureSource::Create(std::move(c), seed);
    EXPECT_TRUE(mix.ok()) << mix.status();
    return std::move(*mix);
  }
  ScratchDir dir_;
};

TEST_F(MixtureSourceTest, EveryBlockMatchesTheWeightsAndNoSampleRepeats) {
  auto mix = Make(3, 1);
  ASSERT_EQ(mix->quotas(), (std::vector<int64_t>{3072, 1024}));
  const int64_t blocks = 5;
  std::vector<std::set<int64_t>> samples(2);
  for (int64_t block = 0; block < blocks; ++block) {
    int64_t counts[2] = {0, 0};
    for (int64_t s = 0; s < kMixtureBlock; ++s) {
      const auto pick = mix->PickSample(block * kMixtureBlock + s);
      ++counts[pick.component];
      ASSERT_TRUE(samples[static_cast<size_t>(pick.component)].insert(pick.sample).second)
          << "component " << pick.component << " sample " << pick.sample << " read twice";
    }
    EXPECT_EQ(counts[0], 3072);
    EXPECT_EQ(counts[1], 1024);
  }
  // Each component reads exactly its first blocks * quota samples: no gaps.
  EXPECT_EQ(*samples[0].rbegin(), blocks * 3072 - 1);
  EXPECT_EQ(*samples[1].rbegin(), blocks * 1024 - 1);
  // Interleaved, not in runs: the first 64 samples already mix both.
  std::set<int> first;
  for (int64_t g = 0; g < 64; ++g) first.insert(mix->PickSample(g).component);
  EXPECT_EQ(first.size(), 2u);
}

TEST_F(MixtureSourceTest, BatchesArePureFunctionsOfTheIndex) {
  auto a = Make(1, 1), b = Make(1, 1);
  Batch x, y;
  for (int64_t i : {0, 5, 1000, 3}) {
    ASSERT_TRUE(a->Read(i, 4, 32, &x).ok());
    ASSERT_TRUE(b->Read(i, 4, 32, &y).ok());
    const int32_t* px = x.inputs.data<int32_t>();
    const int32_t* py = y.inputs.data<int32_t>();
    EXPECT_TRUE(std::equal(px, px + 4 * 32, py)) << "index " << i;
  }
  // Row b of batch i is the picked component's own sample.
  auto text = Open(dir_ / "text");
  auto code = Open(dir_ / "code");
  std::vector<int32_t> in(32), tg(32);
  ASSERT_TRUE(a->Read(7, 4, 32, &x).ok());
  for (int row = 0; row < 4; ++row) {
    const auto pick = a->PickSample(7 * 4 + row);
    ShardSource& source = pick.component == 0 ? *text : *code;
    ASSERT_TRUE(source.ReadSample(pick.sample, 32, in.data(), tg.data()).ok());
    const int32_t* row_in = x.inputs.data<int32_t>() + row * 32;
    EXPECT_TRUE(std::equal(in.begin(), in.end(), row_in)) << "row " << row;
  }
}

TEST_F(MixtureSourceTest, RejectsComponentsOfDifferentTokenizers) {
  testing::WriteShards(dir_ / "other", testing::RandomTokens(5'000, 1000, 2), 1000, 8'000, kHash + 1);
  std::vector<MixtureComponent> c;
  c.push_back({Open(dir_ / "text"), 1});
  c.push_back({Open(dir_ / "other"), 1});
  auto mix = MixtureSource::Create(std::move(c), 1);
  ASSERT_FALSE(mix.ok());
  EXPECT_NE(mix.status().message().find("different tokenizers"), std::string::npos);
}

TEST_F(MixtureSourceTest, OpensFromTheConfig) {
  switchboard::DataConfig data;
  auto* text = data.add_train_mixture();
  text->set_path(dir_ / "text");
  text->set_weight(1);
  auto* code = data.add_train_mixture();
  code->set_path(dir_ / "code");
  code->set_weight(1);
  auto source = OpenTrainSource(data, 1);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*source)->num_tokens(), 25'000);
  EXPECT_NE((*source)->Describe().find("50.0%"), std::string::npos) << (*source)->Describe();
  data.set_train_path(dir_ / "text");
  EXPECT_FALSE(OpenTrainSource(data, 1).ok());  // exclusive
  data.clear_train_path();
  data.mutable_train_mixture(1)->set_path(dir_ / "missing");
  auto bad = OpenTrainSource(data, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train_mixture[1]"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace sb
