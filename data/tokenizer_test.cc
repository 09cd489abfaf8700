// The SentencePiece wrapper against the real thing: a model trained by
// Debian's spm_train (Llama's settings) loads through our statically built
// library, gives exactly spm_encode's ids, and round-trips text (code,
// indentation, non-ASCII, emoji through byte fallback). Needs the
// `sentencepiece` package (launch/install_deps.sh installs it).
#include "data/tokenizer.h"

#include <gtest/gtest.h>

#include <sstream>

#include "absl/strings/str_split.h"
#include "data/shard_format.h"
#include "data/test_util.h"

namespace sb {
namespace {

using testing::ScratchDir;

// Trains a BPE model with spm_train on a few python3.11-doc files; returns
// the .model path.
std::string TrainWithSpmTrain(const ScratchDir& dir, int vocab_size, const std::string& extra) {
  std::string out;
  if (testing::Run("command -v spm_train", &out) != 0) {
    ADD_FAILURE() << "spm_train not found: install Debian's `sentencepiece` package "
                     "(bash launch/install_deps.sh)";
    return "";
  }
  const std::string docs = testing::PythonDocSources() + "/tutorial/";
  const std::string corpus = dir / "corpus.txt";
  EXPECT_EQ(testing::Run("cat " + docs + "classes.rst.txt " + docs + "controlflow.rst.txt " +
                             docs + "datastructures.rst.txt > " + corpus,
                         &out),
            0)
      << out;
  const std::string prefix = dir / "llama_like";
  const std::string cmd =
      "spm_train --input=" + corpus + " --model_prefix=" + prefix +
      " --vocab_size=" + std::to_string(vocab_size) +
      " --model_type=bpe --byte_fallback=true --character_coverage=0.9995"
      " --normalization_rule_name=identity --remove_extra_whitespaces=false --split_digits=true"
      " --allow_whitespace_only_pieces=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1"
      " --num_threads=2 --minloglevel=2 " + extra;
  EXPECT_EQ(testing::Run(cmd, &out), 0) << cmd << "\n" << out;
  return prefix + ".model";
}

const char* const kSamples[] = {
    "def fib(n):\n    a, b = 0, 1\n    while a < n:\n        print(a, end=' ')\n",
    "Classes provide a means of bundling data and functionality together.",
    "naïve café — 東京 😀 ∑ x² ½",
    "  leading spaces and\ttabs\t\tkept   exactly  ",
    "numbers 1234567890 and symbols ~!@#$%^&*()_+{}|:\"<>?",
};

TEST(TokenizerTest, SpmTrainModelMatchesSpmEncodeAndRoundTrips) {
  ScratchDir dir;
  const std::string model = TrainWithSpmTrain(dir, 1000, "");
  ASSERT_FALSE(model.empty());
  std::string error;
  auto tokenizer = Tokenizer::Load(model, &error);
  ASSERT_NE(tokenizer, nullptr) << error;
  EXPECT_EQ(tokenizer->vocab_size(), 1000);
  EXPECT_EQ(tokenizer->unk_id(), 0);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->IdToPiece(2), "</s>");
  EXPECT_EQ(TokenizerHash(tokenizer->model_bytes()), *TokenizerFileHash(model));

  for (const char* sample : kSamples) {
    std::vector<int32_t> ids;
    ASSERT_TRUE(tokenizer->Encode(sample, &ids, &error)) << error;
    for (int32_t id : ids) EXPECT_NE(id, tokenizer->unk_id()) << "byte fallback leaves no <unk>";
    std::string text;
    ASSERT_TRUE(tokenizer->Decode(ids, &text, &error)) << error;
    EXPECT_EQ(text, sample);
  }

  // Same ids as Debian's spm_encode, one line at a time (spm_encode reads lines).
  std::string lines;
  for (const char* sample : kSamples) {
    for (auto line : absl::StrSplit(sample, '\n')) {
      if (!line.empty()) absl::StrAppend(&lines, line, "\n");
    }
  }
  testing::WriteFile(dir / "lines.txt", lines);
  std::string out;
  ASSERT_EQ(testing::Run("spm_encode --model=" + model + " --output_format=id < " +
                             (dir / "lines.txt"),
                         &out),
            0)
      << out;
  std::istringstream expected(out);
  for (auto line : absl::StrSplit(lines, '\n', absl::SkipEmpty())) {
    std::string want;
    std::getline(expected, want);
    std::vector<int32_t> ids;
    ASSERT_TRUE(tokenizer->Encode(std::string(line), &ids, &error)) << error;
    std::string got;
    for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&got, i ? " " : "", ids[i]);
    EXPECT_EQ(got, want) << "line: " << line;
  }
}

// Long texts are encoded in newline-cut segments when that is exact; the ids
// must equal one SentencePiece call on the whole text, for a Llama-like
// model (segments on) and for spm_train's default nmt_nfkc model, whose
// normaliser turns newlines into spaces (segments must be off).
TEST(TokenizerTest, SegmentedEncodingEqualsWholeTextEncoding) {
  const std::string docs = testing::PythonDocSources() + "/library/";
  std::string long_text = testing::ReadFile(docs + "stdtypes.rst.txt");  // ~200 KB
  long_text += "\n\n  trailing spaces  \n\n\n" + testing::ReadFile(docs + "os.rst.txt");
  for (const std::string& extra : {std::string(), std::string("--normalization_rule_name=nmt_nfkc "
                                                              "--remove_extra_whitespaces=true")}) {
    ScratchDir dir;
    const std::string model = TrainWithSpmTrain(dir, 2000, extra);
    ASSERT_FALSE(model.empty());
    std::string error;
    auto tokenizer = Tokenizer::Load(model, &error);
    ASSERT_NE(tokenizer, nullptr) << error;
    EXPECT_EQ(tokenizer->segments_at_newlines(), extra.empty()) << extra;
    std::vector<int32_t> fast, whole;
    ASSERT_TRUE(tokenizer->Encode(long_text, &fast, &error)) << error;
    ASSERT_TRUE(tokenizer->EncodeUnsegmented(long_text, &whole, &error)) << error;
    ASSERT_EQ(fast.size(), whole.size()) << extra;
    size_t first_diff = 0;
    while (first_diff < fast.size() && fast[first_diff] == whole[first_diff]) ++first_diff;
    EXPECT_EQ(first_diff, fast.size()) << "ids differ first at token " << first_diff << " " << extra;
  }
}

TEST(TokenizerTest, OurTrainerMakesAByteFallbackBpeModel) {
  std::vector<std::string> sentences;
  for (int rep = 0; rep < 50; ++rep) {
    for (const char* s : kSamples) sentences.push_back(s);
  }
  TokenizerTrainOptions options;
  options.vocab_size = 400;
  std::string model, error;
  ASSERT_TRUE(TrainTokenizer(sentences, options, &model, &error)) << error;
  auto tokenizer = Tokenizer::FromModelBytes(model, &error);
  ASSERT_NE(tokenizer, nullptr) << error;
  EXPECT_EQ(tokenizer->vocab_size(), 400);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->IdToPiece(3), "<0x00>");  // byte pieces follow the specials
  // Its training sentences hold newlines, so pieces may too: no segmenting.
  EXPECT_FALSE(tokenizer->segments_at_newlines());
  const std::string text = "unseen: Ω ≈ ç 🚀\n  indented code()";
  std::vector<int32_t> ids;
  ASSERT_TRUE(tokenizer->Encode(text, &ids, &error)) << error;
  std::string back;
  ASSERT_TRUE(tokenizer->Decode(ids, &back, &error)) << error;
  EXPECT_EQ(back, text);
}

TEST(TokenizerTest, TooSmallVocabIsAnError) {
  TokenizerTrainOptions options;
  options.vocab_size = 100;  // below the 259 specials + bytes
  std::string model, error;
  EXPECT_FALSE(TrainTokenizer({"some text", "more text"}, options, &model, &error));
  EXPECT_NE(error.find("SentencePiece"), std::string::npos) << error;
}

TEST(TokenizerTest, LoadsHandBuiltLargeModel) {
  std::string error;
  auto tokenizer = Tokenizer::FromModelBytes(testing::HandBuiltModel(70'000, true), &error);
  ASSERT_NE(tokenizer, nullptr) << error;
  EXPECT_EQ(tokenizer->vocab_size(), 70'000);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  std::vector<int32_t> ids;
  ASSERT_TRUE(tokenizer->Encode("w5 w69999 other", &ids, &error)) << error;
  EXPECT_EQ(ids, (std::vector<int32_t>{5, 69'999, 0}));
  auto no_eos = Tokenizer::FromModelBytes(testing::HandBuiltModel(10, false), &error);
  ASSERT_NE(no_eos, nullptr) << error;
  EXPECT_EQ(no_eos->eos_id(), -1);
}

TEST(TokenizerTest, RejectsFilesThatAreNotModels) {
  ScratchDir dir;
  testing::WriteFile(dir / "junk.model", "this is not a protobuf");
  std::string error;
  EXPECT_EQ(Tokenizer::Load(dir / "junk.model", &error), nullptr);
  EXPECT_NE(error.find("junk.model"), std::string::npos) << error;
  EXPECT_EQ(Tokenizer::Load(dir / "missing.model", &error), nullptr);
  EXPECT_NE(error.find("missing.model"), std::string::npos) << error;
}

}  // namespace
}  // namespace sb
