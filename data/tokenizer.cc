// SentencePiece wrapper: see tokenizer.h for why it is isolated here.
#include "data/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <unordered_map>

#include "sentencepiece_processor.h"
#include "sentencepiece_trainer.h"

namespace sb {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::Load(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read tokenizer " + path;
    return nullptr;
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto tokenizer = FromModelBytes(std::move(bytes), error);
  if (!tokenizer) *error = "tokenizer " + path + ": " + *error;
  return tokenizer;
}

std::unique_ptr<Tokenizer> Tokenizer::FromModelBytes(std::string model_bytes,
                                                     std::string* error) {
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer());
  const auto status = tokenizer->impl_->processor.LoadFromSerializedProto(model_bytes);
  if (!status.ok()) {
    *error = "not a SentencePiece model (" + status.ToString() + ")";
    return nullptr;
  }
  tokenizer->model_bytes_ = std::move(model_bytes);
  tokenizer->DetectNewlineSegmentation();
  return tokenizer;
}

namespace {
constexpr size_t kSegmentBytes = 4096;
// Newlines next to spaces, blank lines, tabs and non-ASCII: what a
// normaliser that strips, collapses or maps whitespace would change.
constexpr char kNewlineProbe[] =
    "first line  \n  indented\n\n\ttab\n\xC3\xBC\xC3\xB1 \xF0\x9F\x98\x80 x\n \n\nend  \n";
}  // namespace

void Tokenizer::DetectNewlineSegmentation() {
  newline_id_ = -1;
  const auto& p = impl_->processor;
  const int newline = p.PieceToId("<0x0A>");
  if (newline < 0 || !p.IsByte(newline)) return;  // no byte fallback
  for (int id = 0; id < p.GetPieceSize(); ++id) {
    if (!p.IsByte(id) && p.IdToPiece(id).find('\n') != std::string::npos) return;
  }
  std::vector<int32_t> whole, split;
  std::string error;
  if (!EncodeUnsegmented(kNewlineProbe, &whole, &error)) return;
  newline_id_ = newline;  // tentatively, for the probe cut at every newline
  const std::string_view probe = kNewlineProbe;
  const std::vector<size_t> bounds = SegmentBounds(probe, 1);
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    if (!EncodeSegment(probe, bounds[i], bounds[i + 1], &split, &error)) break;
  }
  if (split != whole) newline_id_ = -1;
}

std::vector<size_t> Tokenizer::SegmentBounds(std::string_view text) const {
  if (newline_id_ < 0 || text.size() < 2 * kSegmentBytes) return {0, text.size()};
  return SegmentBounds(text, kSegmentBytes);
}

std::vector<size_t> Tokenizer::SegmentBounds(std::string_view text, size_t segment_bytes) const {
  std::vector<size_t> bounds = {0};
  size_t start = 0;
  while (start < text.size()) {
    size_t end = start + segment_bytes >= text.size() ? std::string_view::npos
                                                        : text.find('\n', start + segment_bytes);
    start = end == std::string_view::npos ? text.size() : end;
    bounds.push_back(start);
  }
  if (bounds.size() == 1) bounds.push_back(0);  // empty text: one empty segment
  return bounds;
}

bool Tokenizer::EncodeSegment(std::string_view text, size_t begin, size_t end,
                              std::vector<int32_t>* ids, std::string* error) const {
  std::vector<int32_t> part;
  if (!EncodeUnsegmented(text.substr(begin, end - begin), &part, error)) return false;
  auto from = part.begin();
  if (begin > 0) {  // the segment starts with "\n": drop the dummy-prefix tokens before it
    from = std::find(part.begin(), part.end(), newline_id_);
    if (from == part.end()) {
      *error = "segment at byte " + std::to_string(begin) + " lost its newline (internal error)";
      return false;
    }
  }
  ids->insert(ids->end(), from, part.end());
  return true;
}

bool Tokenizer::Encode(std::string_view text, std::vector<int32_t>* ids,
                       std::string* error) const {
  ids->clear();
  const std::vector<size_t> bounds = SegmentBounds(text);
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    if (!EncodeSegment(text, bounds[i], bounds[i + 1], ids, error)) return false;
  }
  return true;
}

bool Tokenizer::EncodeUnsegmented(std::string_view text, std::vector<int32_t>* ids,
                                  std::string* error) const {
  std::vector<int> out;
  const auto status = impl_->processor.Encode(text, &out);
  if (!status.ok()) {
    *error = status.ToString();
    return false;
  }
  ids->assign(out.begin(), out.end());
  return true;
}

bool Tokenizer::Decode(const std::vector<int32_t>& ids, std::string* text,
                       std::string* error) const {
  const std::vector<int> in(ids.begin(), ids.end());
  const auto status = impl_->processor.Decode(in, text);
  if (!status.ok()) {
    *error = status.ToString();
    return false;
  }
  return true;
}

int Tokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }
int Tokenizer::eos_id() const { return impl_->processor.eos_id(); }
int Tokenizer::bos_id() const { return impl_->processor.bos_id(); }
int Tokenizer::unk_id() const { return impl_->processor.unk_id(); }
std::string Tokenizer::IdToPiece(int id) const { return impl_->processor.IdToPiece(id); }

namespace {

class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& v) : v_(v) {}
  bool done() const override { return i_ >= v_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return v_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& v_;
  size_t i_ = 0;
};

}  // namespace

bool TrainTokenizer(const std::vector<std::string>& sentences,
                    const TokenizerTrainOptions& options, std::string* model_bytes,
                    std::string* error) {
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"byte_fallback", options.byte_fallback ? "true" : "false"},
      {"character_coverage", std::to_string(options.character_coverage)},
      {"num_threads", std::to_string(options.num_threads)},
      {"max_sentence_length", std::to_string(options.max_sentence_length)},
      // Llama's conventions: text is kept byte-exact (code indentation matters).
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      // We sample sentences ourselves (data/prepare.cc); use them all.
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"minloglevel", "1"},  // SentencePiece's INFO log is one line per step
  };
  VectorIterator it(sentences);
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, model_bytes);
  if (!status.ok()) {
    *error = "SentencePiece training failed: " + status.ToString();
    return false;
  }
  return true;
}

}  // namespace sb
