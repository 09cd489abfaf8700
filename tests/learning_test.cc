// The learning test: configs/tiny.textproto trained on real text (the
// Python tutorial's reStructuredText sources from python3.11-doc, read at
// byte level) must end with a training loss below the unigram entropy of
// that text, i.e. it must learn more than token frequencies.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "data/byte_text_source.h"
#include "gtest/gtest.h"
#include "launch/trainer.h"

namespace sb {
namespace {

constexpr char kCorpus[] = "/usr/share/doc/python3.11/html/_sources/tutorial";

// Entropy (nats) of the token frequency distribution.
double UnigramEntropy(const std::vector<int32_t>& tokens) {
  std::map<int32_t, int64_t> counts;
  for (int32_t t : tokens) ++counts[t];
  double h = 0;
  for (const auto& [token, n] : counts) {
    const double p = static_cast<double>(n) / tokens.size();
    h -= p * std::log(p);
  }
  return h;
}

TEST(Learning, TinyConfigEndsBelowUnigramEntropy) {
  ASSERT_TRUE(std::filesystem::is_directory(kCorpus))
      << kCorpus << " is missing: run launch/install_deps.sh (package python3.11-doc)";
  const char* src = std::getenv("SB_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "run through ctest (SB_SOURCE_DIR)";
  auto config = LoadConfigFile(std::string(src) + "/configs/tiny.textproto");
  ASSERT_TRUE(config.ok()) << config.status();
  const int steps = 150;
  for (const std::string& o :
       {std::string("model.vocab_size=257"), std::string("data.train_path=") + kCorpus,
        std::string("data.val_path="), "train.steps=" + std::to_string(steps),
        std::string("schedule.warmup_steps=20")}) {
    ASSERT_TRUE(ApplyOverride(o, &*config).ok()) << o;
  }
  auto trainer = Trainer::Create(*config, "");
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  auto text = ByteTextSource::Open(kCorpus, 0);
  ASSERT_TRUE(text.ok());
  const double entropy = UnigramEntropy((*text)->tokens());

  double first = 0, last = 0;
  const int window = 10;
  for (int step = 0; step < steps; ++step) {
    auto m = (*trainer)->TrainStep(step);
    ASSERT_TRUE(m.ok()) << m.status();
    if (step < window) first += m->loss / window;
    if (step >= steps - window) last += m->loss / window;
  }
  std::printf("unigram entropy %.3f nats; loss first %d steps %.3f, last %d steps %.3f\n",
              entropy, window, first, window, last);
  EXPECT_GT(first, entropy) << "an untrained model should start above the unigram entropy";
  EXPECT_LT(last, entropy) << "the model did not learn beyond byte frequencies";
}

}  // namespace
}  // namespace sb
