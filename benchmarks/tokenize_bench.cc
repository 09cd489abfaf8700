// Tokenizer throughput on one file held in memory, single thread: our
// Encode (newline segments) against one SentencePiece call on the whole
// text, after checking that both give the same ids. Prints one JSON object.
// Driven by benchmarks/data_throughput.py (which also times Debian's
// spm_encode and prepare-data end to end on the same file and model).
//
// Usage: tokenize_bench MODEL FILE [--max_bytes N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "tokenize_bench: %s\n", message.c_str());
  return 1;
}

template <typename F>
double Seconds(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Fail("usage: tokenize_bench MODEL FILE [--max_bytes N]");
  size_t max_bytes = 2'000'000;  // the unsegmented call is slow on long texts
  if (argc >= 5 && std::string(argv[3]) == "--max_bytes") max_bytes = std::strtoull(argv[4], nullptr, 10);
  std::string error;
  auto tokenizer = sb::Tokenizer::Load(argv[1], &error);
  if (!tokenizer) return Fail(error);
  std::ifstream in(argv[2], std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty()) return Fail(std::string("cannot read ") + argv[2]);
  if (text.size() > max_bytes) text.resize(text.rfind('\n', max_bytes) + 1);

  std::vector<int32_t> fast, whole;
  bool ok = true;
  const double fast_s = Seconds([&] { ok = tokenizer->Encode(text, &fast, &error); });
  if (!ok) return Fail(error);
  const double whole_s = Seconds([&] { ok = tokenizer->EncodeUnsegmented(text, &whole, &error); });
  if (!ok) return Fail(error);
  if (fast != whole) return Fail("segmented and whole-text ids differ");

  std::printf("{\"bytes\": %zu, \"tokens\": %zu, \"segments\": %s, \"encode_mb_per_s\": %.3f, "
              "\"unsegmented_mb_per_s\": %.3f}\n",
              text.size(), fast.size(), tokenizer->segments_at_newlines() ? "true" : "false",
              text.size() / 1e6 / fast_s, text.size() / 1e6 / whole_s);
  return 0;
}
