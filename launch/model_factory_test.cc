// The "active parameters" figure of the startup line: parameters one token
// touches, never more than the model's total and independent of seq_len
// (it was 6N + attention FLOPs / 6, which grows with seq_len and exceeded
// the total at top_k = num_experts).
#include "launch/model_factory.h"

#include "gtest/gtest.h"

namespace sb {
namespace {

TrainConfig Config(int top_k, bool tied) {
  auto config = ParseConfigText(
      "model { vocab_size: 300 d_model: 16 num_layers: 3 num_heads: 4 num_kv_heads: 2 "
      "ffn_dim: 40 expert_ffn_dim: 24 max_seq_len: 64 }\nmoe { num_experts: 8 moe_layers: [0, 2] }\n",
      "test");
  SB_CHECK(config.ok()) << config.status();
  config->mutable_moe()->set_top_k(top_k);
  config->mutable_model()->set_tie_embeddings(tied);
  return *config;
}

TEST(ActiveParametersPerToken, CountsTopKExpertsAndEverythingElse) {
  for (bool tied : {false, true}) {
    const ModelOptions all = ModelOptionsFromConfig(Config(8, tied));
    const Model model(all, nullptr, DType::kF32, Device::kCpu);
    const double total = static_cast<double>(model.NumParameters());
    // top_k = num_experts: every parameter is active.
    EXPECT_EQ(ActiveParametersPerToken(all), total) << "tied " << tied;
    // top-2 of 8: 6 of 8 experts (3 matrices of 24 x 16 each) idle in each of 2 MoE blocks.
    const ModelOptions top2 = ModelOptionsFromConfig(Config(2, tied));
    EXPECT_EQ(ActiveParametersPerToken(top2), total - 2 * 6 * 3 * 24 * 16) << "tied " << tied;
  }
}

}  // namespace
}  // namespace sb
