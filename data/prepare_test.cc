// prepare-data end to end on real text (python3.11-doc sources): shards
// decode back to the documents, EOS ends each, train/val split by document,
// a given tokenizer is used unchanged, output is identical for 1 and 2
// threads, and each bad input fails naming the file and leaves nothing at
// --out.
#include "data/prepare.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "data/shard_format.h"
#include "data/shard_source.h"
#include "data/test_util.h"
#include "data/tokenizer.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

std::string Tutorial(const std::string& name) {
  return testing::PythonDocSources() + "/tutorial/" + name;
}

PrepareOptions SmallCorpus(const ScratchDir& dir) {
  PrepareOptions o;
  o.inputs = {Tutorial("appetite.rst.txt"), Tutorial("interpreter.rst.txt"),
              Tutorial("whatnow.rst.txt"), Tutorial("venv.rst.txt")};
  o.out_dir = dir / "out";
  o.vocab_size = 600;
  o.val_fraction = 0.25;  // one document of four
  o.shard_tokens = 2'000;  // several shards
  o.progress = false;
  return o;
}

// Splits a stream at EOS into documents and decodes each.
std::vector<std::string> DecodeDocuments(const std::string& shard_dir, const Tokenizer& tok) {
  auto source = ShardSource::Open(shard_dir, {});
  EXPECT_TRUE(source.ok()) << source.status();
  std::vector<int32_t> all(static_cast<size_t>((*source)->num_tokens()));
  EXPECT_TRUE((*source)->CopyTokens(0, (*source)->num_tokens(), all.data()).ok());
  EXPECT_EQ(all.back(), tok.eos_id()) << "the stream ends with EOS";
  std::vector<std::string> docs;
  std::vector<int32_t> doc;
  for (int32_t id : all) {
    if (id != tok.eos_id()) {
      doc.push_back(id);
      continue;
    }
    std::string text, error;
    EXPECT_TRUE(tok.Decode(doc, &text, &error)) << error;
    docs.push_back(text);
    doc.clear();
  }
  return docs;
}

// Nothing at --out, and no staging directory left beside it.
void ExpectNoOutput(const ScratchDir& dir) {
  EXPECT_FALSE(fs::exists(dir / "out"));
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".out.tmp"), std::string::npos)
        << "left behind: " << entry.path();
  }
}

TEST(PrepareTest, EndToEndShardsDecodeToTheDocuments) {
  ScratchDir dir;
  PrepareOptions o = SmallCorpus(dir);
  auto summary = PrepareData(o);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->vocab_size, 600);
  EXPECT_EQ(summary->train_documents, 3);
  EXPECT_EQ(summary->val_documents, 1);
  EXPECT_GT(summary->train_shards, 1);
  for (const char* f : {"tokenizer.model", "info.json", "train/shard_00000.bin",
                        "val/shard_00000.bin"}) {
    EXPECT_TRUE(fs::exists(dir / ("out/" + std::string(f)))) << f;
  }
  std::string error;
  auto tok = Tokenizer::Load(dir / "out/tokenizer.model", &error);
  ASSERT_NE(tok, nullptr) << error;
  EXPECT_EQ(summary->tokenizer_hash, TokenizerHash(tok->model_bytes()));
  EXPECT_TRUE(tok->segments_at_newlines()) << "trained on lines: no piece holds a newline";

  // Train and val hold each input exactly once, in corpus order, byte-exact.
  std::vector<std::string> train = DecodeDocuments(dir / "out/train", *tok);
  std::vector<std::string> val = DecodeDocuments(dir / "out/val", *tok);
  ASSERT_EQ(train.size(), 3u);
  ASSERT_EQ(val.size(), 1u);
  size_t t = 0;
  for (int64_t i = 0; i < 4; ++i) {
    const std::string original = testing::ReadFile(o.inputs[static_cast<size_t>(i)]);
    if (IsValidationDocument(i, o.val_fraction, o.seed)) {
      EXPECT_EQ(val[0], original) << o.inputs[static_cast<size_t>(i)];
    } else {
      EXPECT_EQ(train[t++], original) << o.inputs[static_cast<size_t>(i)];
    }
  }
  auto verified = VerifyPreparedData(dir / "out", 600);
  EXPECT_TRUE(verified.ok()) << verified.status();
  EXPECT_FALSE(VerifyPreparedData(dir / "out", 8192).ok());
}

TEST(PrepareTest, GivenSpmTrainTokenizerIsUsedUnchanged) {
  ScratchDir dir;
  std::string out;
  const std::string corpus = dir / "c.txt";
  ASSERT_EQ(testing::Run("cat " + Tutorial("classes.rst.txt") + " " + Tutorial("errors.rst.txt") +
                             " > " + corpus + " && spm_train --input=" + corpus +
                             " --model_prefix=" + (dir / "llama") +
                             " --vocab_size=800 --model_type=bpe --byte_fallback=true"
                             " --minloglevel=2",
                         &out),
            0)
      << out;
  PrepareOptions o = SmallCorpus(dir);
  o.vocab_size = 0;
  o.tokenizer_path = dir / "llama.model";
  auto summary = PrepareData(o);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->vocab_size, 800);
  EXPECT_EQ(summary->tokenizer_seconds, 0);
  EXPECT_EQ(Fnv1a64(testing::ReadFile(dir / "out/tokenizer.model")),
            Fnv1a64(testing::ReadFile(dir / "llama.model")));
  EXPECT_TRUE(VerifyPreparedData(dir / "out", 800).ok());
}

TEST(PrepareTest, OutputDoesNotDependOnThreads) {
  ScratchDir dir;
  PrepareOptions o = SmallCorpus(dir);
  // A 200 KB document is encoded in segments spread over the threads.
  o.inputs.push_back(testing::PythonDocSources() + "/library/stdtypes.rst.txt");
  o.val_fraction = 0.2;
  o.threads = 1;
  ASSERT_TRUE(PrepareData(o).ok());
  o.threads = 2;
  o.out_dir = dir / "out2";
  ASSERT_TRUE(PrepareData(o).ok());
  for (const char* f : {"tokenizer.model", "train/shard_00000.bin", "train/shard_00001.bin",
                        "val/shard_00000.bin"}) {
    EXPECT_EQ(Fnv1a64(testing::ReadFile(dir / ("out/" + std::string(f)))),
              Fnv1a64(testing::ReadFile(dir / ("out2/" + std::string(f)))))
        << f << " differs";
  }
}

TEST(PrepareTest, ReadsJsonLinesWithAConfigurableField) {
  ScratchDir dir;
  testing::WriteFile(dir / "in/a.jsonl",
                     "{\"content\": \"first document\\nwith two lines\", \"id\": 1}\n"
                     "\n"
                     "{\"content\": \"second \\u00e9l\\u00e8ve\"}\n"
                     "{\"content\": \"\"}\n");
  testing::WriteFile(dir / "in/b.txt", "a plain text document");
  PrepareOptions o;
  o.inputs = {dir / "in"};
  o.out_dir = dir / "out";
  o.vocab_size = 300;
  o.val_fraction = 0;
  o.corpus.text_field = "content";
  o.progress = false;
  auto summary = PrepareData(o);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->train_documents, 3);
  EXPECT_EQ(summary->corpus.empty_documents, 1);
  EXPECT_FALSE(fs::exists(dir / "out/val"));
  std::string error;
  auto tok = Tokenizer::Load(dir / "out/tokenizer.model", &error);
  ASSERT_NE(tok, nullptr) << error;
  EXPECT_EQ(DecodeDocuments(dir / "out/train", *tok),
            (std::vector<std::string>{"first document\nwith two lines", "second \xC3\xA9l\xC3\xA8ve",
                                      "a plain text document"}));
}

TEST(PrepareTest, BadJsonLinesNameFileAndLine) {
  ScratchDir dir;
  testing::WriteFile(dir / "bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": broken\n");
  testing::WriteFile(dir / "nofield.jsonl", "{\"body\": \"x\"}\n");
  PrepareOptions o;
  o.out_dir = dir / "out";
  o.vocab_size = 300;
  o.progress = false;
  o.inputs = {dir / "bad.jsonl"};
  auto s = PrepareData(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("bad.jsonl:2: not valid JSON"), std::string::npos)
      << s.status();
  o.inputs = {dir / "nofield.jsonl"};
  s = PrepareData(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("nofield.jsonl:1"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("\"text\""), std::string::npos) << s.status();
  ExpectNoOutput(dir);
}

TEST(PrepareTest, EmptyInputIsAnError) {
  ScratchDir dir;
  testing::WriteFile(dir / "empty.txt", "");
  testing::WriteFile(dir / "emptydir/a.txt", "");
  testing::WriteFile(dir / "emptydir/sub/b.txt", "");
  fs::create_directories(dir / "nothing");
  PrepareOptions o;
  o.out_dir = dir / "out";
  o.vocab_size = 300;
  o.progress = false;
  for (const std::string& input : {dir / "empty.txt", dir / "emptydir", dir / "nothing"}) {
    o.inputs = {input};
    auto s = PrepareData(o);
    ASSERT_FALSE(s.ok()) << input;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
    EXPECT_NE(s.status().message().find(input), std::string::npos) << s.status();
    ExpectNoOutput(dir);
  }
  o.inputs = {dir / "missing.txt"};
  auto s = PrepareData(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("missing.txt"), std::string::npos);
}

TEST(PrepareTest, InvalidUtf8IsReplacedOrReported) {
  ScratchDir dir;
  const std::string text = "caf\xE9 au lait, na\xEFve\n" + testing::ReadFile(Tutorial("venv.rst.txt"));
  testing::WriteFile(dir / "latin1.txt", text);
  PrepareOptions o;
  o.inputs = {dir / "latin1.txt"};
  o.out_dir = dir / "out";
  o.vocab_size = 400;
  o.val_fraction = 0;
  o.progress = false;
  o.corpus.invalid_utf8 = InvalidUtf8Policy::kError;
  auto s = PrepareData(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("latin1.txt: invalid UTF-8 at byte 3"), std::string::npos)
      << s.status();
  ExpectNoOutput(dir);

  o.corpus.invalid_utf8 = InvalidUtf8Policy::kReplace;  // the default
  s = PrepareData(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->corpus.utf8_replaced, 2);
  std::string error;
  auto tok = Tokenizer::Load(dir / "out/tokenizer.model", &error);
  ASSERT_NE(tok, nullptr) << error;
  const auto docs = DecodeDocuments(dir / "out/train", *tok);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].substr(0, 24), "caf\xEF\xBF\xBD au lait, na\xEF\xBF\xBDve\n");
}

TEST(PrepareTest, UnwritableOutputIsAnError) {
  ScratchDir dir;
  testing::WriteFile(dir / "file", "a regular file, not a directory");
  PrepareOptions o = SmallCorpus(dir);
  o.out_dir = dir / "file/out";  // parent is a file (chmod does not stop root)
  auto s = PrepareData(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied) << s.status();
  EXPECT_NE(s.status().message().find(dir / "file"), std::string::npos) << s.status();
}

TEST(PrepareTest, ExistingOutputIsKeptUnlessOverwrite) {
  ScratchDir dir;
  PrepareOptions o = SmallCorpus(dir);
  ASSERT_TRUE(PrepareData(o).ok());
  const uint64_t before = Fnv1a64(testing::ReadFile(dir / "out/train/shard_00000.bin"));
  o.seed = 5;
  auto s = PrepareData(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Fnv1a64(testing::ReadFile(dir / "out/train/shard_00000.bin")), before);
  // A failing overwrite leaves the old output intact.
  o.overwrite = true;
  o.inputs.push_back(dir / "missing.txt");
  EXPECT_FALSE(PrepareData(o).ok());
  EXPECT_EQ(Fnv1a64(testing::ReadFile(dir / "out/train/shard_00000.bin")), before);
  o.inputs.pop_back();
  ASSERT_TRUE(PrepareData(o).ok());
  EXPECT_TRUE(VerifyPreparedData(dir / "out", 600).ok());
}

TEST(PrepareTest, VocabThatDoesNotFitTheDtypeIsAnError) {
  ScratchDir dir;
  testing::WriteFile(dir / "big.model", testing::HandBuiltModel(70'000, true));
  PrepareOptions o = SmallCorpus(dir);
  o.vocab_size = 0;
  o.tokenizer_path = dir / "big.model";
  o.token_bytes = 2;
  auto s = PrepareData(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("does not fit u16"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("big.model"), std::string::npos) << s.status();
  ExpectNoOutput(dir);
  o.token_bytes = 0;  // auto: u32
  auto ok = PrepareData(o);
  ASSERT_TRUE(ok.ok()) << ok.status();
  auto source = ShardSource::Open(dir / "out/train", {});
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*source)->vocab_size(), 70'000);
}

TEST(PrepareTest, TokenizerWithoutEosIsAnError) {
  ScratchDir dir;
  testing::WriteFile(dir / "noeos.model", testing::HandBuiltModel(1000, false));
  PrepareOptions o = SmallCorpus(dir);
  o.vocab_size = 0;
  o.tokenizer_path = dir / "noeos.model";
  auto s = PrepareData(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("no EOS"), std::string::npos) << s.status();
  ExpectNoOutput(dir);
}

TEST(PrepareTest, SmallCorpusStillGetsAValidationDocument) {
  ScratchDir dir;
  PrepareOptions o = SmallCorpus(dir);
  o.val_fraction = 0.01;  // picks none of 4 documents for most seeds
  while (IsValidationDocument(0, 0.01, o.seed) || IsValidationDocument(1, 0.01, o.seed) ||
         IsValidationDocument(2, 0.01, o.seed) || IsValidationDocument(3, 0.01, o.seed)) {
    ++o.seed;
  }
  auto s = PrepareData(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->train_documents, 3);
  EXPECT_EQ(s->val_documents, 1);
  std::string error;
  auto tok = Tokenizer::Load(dir / "out/tokenizer.model", &error);
  ASSERT_NE(tok, nullptr) << error;
  EXPECT_EQ(DecodeDocuments(dir / "out/val", *tok),
            std::vector<std::string>{testing::ReadFile(o.inputs.back())});
}

TEST(PrepareTest, OneDocumentCannotBeSplit) {
  ScratchDir dir;
  PrepareOptions o = SmallCorpus(dir);
  o.inputs = {Tutorial("venv.rst.txt")};
  for (uint64_t seed = 0; seed < 8; ++seed) {  // the document lands in train or in val
    o.seed = seed;
    auto s = PrepareData(o);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("--val_fraction 0"), std::string::npos) << s.status();
    ExpectNoOutput(dir);
  }
  o.val_fraction = 0;
  EXPECT_TRUE(PrepareData(o).ok());
}

TEST(PrepareTest, ValidationSelectionIsEvenAndSeeded) {
  int64_t count = 0, differ = 0;
  for (int64_t i = 0; i < 10'000; ++i) {
    count += IsValidationDocument(i, 0.01, 1);
    differ += IsValidationDocument(i, 0.01, 1) != IsValidationDocument(i, 0.01, 2);
  }
  EXPECT_EQ(count, 100);
  EXPECT_GT(differ, 0);
  EXPECT_FALSE(IsValidationDocument(3, 0, 1));
}

}  // namespace
}  // namespace sb
