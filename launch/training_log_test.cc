// The trainer's TensorBoard output and expert-load line: a short run writes
// an event file that our TFRecord reader takes apart (the format itself is
// checked against TensorBoard's writer in tensorboard/event_writer_test.cc)
// whose scalars and histograms are the values of metrics.jsonl; MFU uses the
// configured peak; logging.tensorboard=false writes no event file.
#include "launch/training_log.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "gtest/gtest.h"
#include "launch/model_factory.h"
#include "launch/trainer.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

TEST(FormatExpertCounts, OneLinePerLayer) {
  EXPECT_EQ(FormatExpertCounts({{1, 3, 0, 4}, {2, 2, 2, 2}}),
            "  moe 0 | max/mean 2.00 | 1 3 0 4\n"
            "  moe 1 | max/mean 1.00 | 2 2 2 2\n");
  EXPECT_EQ(FormatExpertCounts({}), "");
}

class TrainingLog : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string text;
    for (int i = 0; i < 400; ++i) text += "tokens go to experts " + std::to_string(i % 17) + ".\n";
    testing::WriteBytes(dir_.Path("corpus.txt"), text);
    auto config = ParseConfigText(
        "model { vocab_size: 257 d_model: 16 num_layers: 2 num_heads: 2 num_kv_heads: 1 "
        "ffn_dim: 32 expert_ffn_dim: 16 max_seq_len: 32 }\n"
        "moe { num_experts: 4 top_k: 2 }\n"
        "train { steps: 4 micro_batch_size: 2 seq_len: 16 log_every: 2 seed: 3 }\n"
        "logging { expert_counts: true peak_tflops: 0.5 }\n",
        "test");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    config_.mutable_data()->set_train_path(dir_.Path("corpus.txt"));
  }

  void Train(const std::string& run) {
    auto t = Trainer::Create(config_, dir_.Path(run));
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Run().ok());
  }

  std::vector<nlohmann::json> Metrics(const std::string& run) {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_.Path(run + "/metrics.jsonl"));
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  std::vector<std::string> EventFiles(const std::string& run) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir_.Path(run))) {
      if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) files.push_back(e.path());
    }
    return files;
  }

  testing::TempDir dir_;
  TrainConfig config_;
};

TEST_F(TrainingLog, EventFileHoldsTheLoggedMetrics) {
  Train("run");
  const std::vector<std::string> files = EventFiles("run");
  ASSERT_EQ(files.size(), 1u);
  auto records = ReadTfRecords(testing::ReadBytes(files[0]));
  ASSERT_TRUE(records.ok()) << records.status();
  std::map<std::pair<int64_t, std::string>, double> scalars;
  std::map<std::pair<int64_t, std::string>, std::vector<double>> histograms;
  for (size_t i = 0; i < records->size(); ++i) {
    tensorboard::Event e;
    ASSERT_TRUE(e.ParseFromString((*records)[i]));
    if (i == 0) {
      EXPECT_EQ(e.file_version(), "brain.Event:2");
      continue;
    }
    EXPECT_GT(e.wall_time(), 1.6e9);
    for (const auto& v : e.summary().value()) {
      if (v.has_histo()) {
        histograms[{e.step(), v.tag()}] = {v.histo().bucket().begin(), v.histo().bucket().end()};
      } else {
        scalars[{e.step(), v.tag()}] = v.simple_value();
      }
    }
  }
  const std::vector<nlohmann::json> metrics = Metrics("run");
  ASSERT_EQ(metrics.size(), 2u);  // steps 2 and 4
  const double flops_per_token =
      TrainFlopsPerToken(ModelOptionsFromConfig(config_), config_.train().seq_len());
  for (const nlohmann::json& m : metrics) {
    const int64_t step = m["step"];
    for (const auto& [tag, key] : std::vector<std::pair<std::string, std::string>>{
             {"train/loss", "loss"}, {"train/aux_loss", "aux_loss"}, {"train/z_loss", "z_loss"},
             {"train/lr", "lr"}, {"train/grad_norm", "grad_norm"},
             {"train/dropped_fraction", "dropped_frac"}, {"train/router_entropy", "router_entropy"},
             {"perf/tokens_per_s", "tokens_per_s"}, {"perf/mfu", "mfu"}, {"perf/step_s", "step_s"},
             {"perf/optimizer_s", "optimizer_s"}}) {
      const std::pair<int64_t, std::string> at(step, tag);
      ASSERT_TRUE(scalars.count(at)) << tag << " at step " << step;
      const double want = m[key];
      EXPECT_NEAR(scalars[at], want, 1e-6 * std::fabs(want) + 1e-30) << tag << " step " << step;
    }
    // MFU against logging.peak_tflops (one rank).
    const double tokens_per_s = m["tokens_per_s"];
    EXPECT_NEAR(m["mfu"].get<double>(), tokens_per_s * flops_per_token / 0.5e12,
                1e-6 * m["mfu"].get<double>());
    for (int layer = 0; layer < 2; ++layer) {
      const std::string n = std::to_string(layer);
      const std::vector<int64_t> counts = m["tokens_per_expert_moe" + n];
      const std::pair<int64_t, std::string> hist(step, "experts/moe" + n + "/expert_load");
      const std::vector<double>& h = histograms[hist];
      ASSERT_EQ(h.size(), counts.size()) << "layer " << layer << " step " << step;
      double sum = 0, max = 0;
      for (size_t e = 0; e < counts.size(); ++e) {
        EXPECT_EQ(h[e], counts[e]);
        sum += counts[e];
        max = std::max<double>(max, counts[e]);
      }
      EXPECT_EQ(sum, 2 * 16 * 2);  // micro-batch tokens x top-k
      const std::pair<int64_t, std::string> at(step, "experts/moe" + n + "/load_max_over_mean");
      EXPECT_NEAR(scalars[at], max / (sum / 4), 1e-6);
    }
  }
}

TEST_F(TrainingLog, OffMeansNoEventFile) {
  config_.mutable_logging()->set_tensorboard(false);
  Train("off");
  EXPECT_TRUE(EventFiles("off").empty());
  EXPECT_EQ(Metrics("off").size(), 2u);
}

}  // namespace
}  // namespace sb
