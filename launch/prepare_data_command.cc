// `switchboard prepare-data`: the CLI over data/prepare.h (docs/data.md).
//   switchboard prepare-data --input PATH... --out DIR
//       (--tokenizer tokenizer.model | --vocab_size N) [--val_fraction F]
//       [--text_field NAME] [--seed S] [--threads T] [--overwrite] ...
//   switchboard prepare-data --verify DIR [--vocab_size N]
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "data/prepare.h"
#include "launch/commands.h"
#include "launch/flags.h"

namespace sb {
namespace {

const std::vector<FlagSpec>& PrepareDataFlags() {
  static const std::vector<FlagSpec> kFlags = {
      {"input", "text file, directory (recursive) or *.jsonl file", false, true},
      {"out", "output dataset directory (tokenizer.model, info.json, train/, val/)"},
      {"tokenizer", "use this SentencePiece tokenizer.model unchanged (e.g. Llama's)"},
      {"vocab_size", "train a BPE tokenizer (byte fallback) with this many pieces"},
      {"val_fraction", "share of documents for val/ (default 0.01; 0: no val/)"},
      {"text_field", "JSON-lines field holding the text (default text)"},
      {"seed", "seed of the tokenizer sample and the val split (default 0)"},
      {"threads", "encoding threads (default: all cores)"},
      {"extensions", "only files ending so in directories, comma-separated (.c,.h)"},
      {"tokenizer_input", "train the tokenizer on these paths instead of --input", false, true},
      {"tokenizer_sample_lines", "lines sampled to train the tokenizer (default 200000)"},
      {"shard_tokens", "tokens per shard file (default 268435456)"},
      {"token_dtype", "auto (u16 up to 65536 ids, else u32), u16 or u32"},
      {"invalid_utf8", "replace (U+FFFD, with a warning; default) or error"},
      {"overwrite", "replace an existing --out directory", true},
      {"quiet", "no progress line", true},
      {"verify", "check a prepared dataset directory instead (with --vocab_size: its size)"},
      {"help", "print this help", true},
  };
  return kFlags;
}

// --help (no error) prints to stdout and succeeds; a usage error goes to stderr.
int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "prepare-data: %s\n\n", error.c_str());
  std::fprintf(error.empty() ? stdout : stderr, "%s",
               FlagsUsage("prepare-data", PrepareDataFlags()).c_str());
  return error.empty() ? 0 : 2;
}

// Exit code for a failed PrepareData: bad input (missing, empty, malformed
// or corrupt files, an existing or unwritable --out) 2; failures while
// running (a write error, an internal error) 1.
int ExitCode(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kPermissionDenied:
      return 2;
    default:
      return 1;
  }
}

absl::StatusOr<PrepareOptions> ToOptions(const Flags& flags) {
  PrepareOptions o;
  o.inputs = flags.All("input");
  o.out_dir = flags.Get("out");
  o.tokenizer_path = flags.Get("tokenizer");
  o.tokenizer_inputs = flags.All("tokenizer_input");
  auto vocab = flags.GetInt("vocab_size", 0);
  auto val = flags.GetDouble("val_fraction", o.val_fraction);
  auto seed = flags.GetInt("seed", 0);
  auto threads = flags.GetInt("threads", 0);
  auto sample = flags.GetInt("tokenizer_sample_lines", o.tokenizer_sample_lines);
  auto shard = flags.GetInt("shard_tokens", o.shard_tokens);
  for (const absl::Status& s : {vocab.status(), val.status(), seed.status(), threads.status(),
                                sample.status(), shard.status()}) {
    if (!s.ok()) return s;
  }
  o.vocab_size = *vocab;
  o.val_fraction = *val;
  o.seed = static_cast<uint64_t>(*seed);
  o.threads = static_cast<int>(*threads);
  o.tokenizer_sample_lines = *sample;
  o.shard_tokens = *shard;
  o.corpus.text_field = flags.Get("text_field", o.corpus.text_field);
  if (flags.Has("extensions")) {
    o.corpus.extensions = absl::StrSplit(flags.Get("extensions"), ',', absl::SkipEmpty());
  }
  const std::string dtype = flags.Get("token_dtype", "auto");
  if (dtype == "auto") {
    o.token_bytes = 0;
  } else if (dtype == "u16") {
    o.token_bytes = 2;
  } else if (dtype == "u32") {
    o.token_bytes = 4;
  } else {
    return absl::InvalidArgumentError("--token_dtype takes auto, u16 or u32");
  }
  const std::string utf8 = flags.Get("invalid_utf8", "replace");
  if (utf8 != "replace" && utf8 != "error") {
    return absl::InvalidArgumentError("--invalid_utf8 takes replace or error");
  }
  o.corpus.invalid_utf8 =
      utf8 == "error" ? InvalidUtf8Policy::kError : InvalidUtf8Policy::kReplace;
  o.overwrite = flags.Has("overwrite");
  o.progress = !flags.Has("quiet");
  return o;
}

}  // namespace

int PrepareDataCommand(const Args& args) {
  auto flags = Flags::Parse(args, PrepareDataFlags());
  if (!flags.ok()) return Usage(std::string(flags.status().message()));
  if (flags->Has("help")) return Usage("");
  if (flags->Has("verify")) {
    auto vocab = flags->GetInt("vocab_size", 0);
    if (!vocab.ok()) return Usage(std::string(vocab.status().message()));
    auto description = VerifyPreparedData(flags->Get("verify"), *vocab);
    if (!description.ok()) {
      std::fprintf(stderr, "prepare-data --verify: %s\n",
                   std::string(description.status().message()).c_str());
      return ExitCode(description.status());
    }
    std::printf("%s: ok (%s)\n", flags->Get("verify").c_str(), description->c_str());
    return 0;
  }
  if (!flags->Has("input") || !flags->Has("out")) return Usage("--input and --out are required");
  auto options = ToOptions(*flags);
  if (!options.ok()) return Usage(std::string(options.status().message()));
  auto summary = PrepareData(*options);
  if (!summary.ok()) {
    std::fprintf(stderr, "prepare-data: %s\n", std::string(summary.status().message()).c_str());
    return ExitCode(summary.status());
  }
  std::fprintf(stderr,
               "[prepare-data] %s: train %lld tokens / %lld documents in %d shard(s), val %lld "
               "tokens / %lld documents; vocab %lld; tokenizer %.1fs, encoding %.1fs (%.2f MB/s)\n",
               options->out_dir.c_str(), static_cast<long long>(summary->train_tokens),
               static_cast<long long>(summary->train_documents), summary->train_shards,
               static_cast<long long>(summary->val_tokens),
               static_cast<long long>(summary->val_documents),
               static_cast<long long>(summary->vocab_size), summary->tokenizer_seconds,
               summary->encode_seconds,
               summary->encode_seconds > 0 ? summary->input_bytes / 1e6 / summary->encode_seconds
                                           : 0.0);
  return 0;
}

}  // namespace sb
