// switchboard generate --ckpt C --prompt TEXT [--max_new_tokens N]
//     [--temperature T] [--top_k K] [--top_p P] [--seed S] [--tokenizer M]
//     [--bos] [--no_stream] [--set a.b=v]...
// Text generation on the CPU with a key/value cache (moe/inference/): the
// prompt is encoded with the run's SentencePiece tokenizer, run once
// (prefill), then one token per step until --max_new_tokens, EOS or
// model.max_seq_len. Text is printed as it is produced (streaming);
// timings go to stderr. MoE blocks route without a capacity limit, as
// transformers and serving stacks do (docs/upcycling.md, "Generation").
#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "data/tokenizer.h"
#include "launch/command_util.h"
#include "launch/model_source.h"
#include "moe/inference/decoder.h"
#include "moe/inference/sampler.h"

namespace sb {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

absl::Status Generate(const Flags& flags) {
  absl::StatusOr<ModelSource> source = OpenModelSource(flags.Get("ckpt"));
  if (!source.ok()) return source.status();
  // Dropless unless the user insists (a --set of the eval factor wins).
  source->config.mutable_moe()->set_capacity_factor_eval(0);
  if (absl::Status s = ApplyOverrides(flags.All("set"), &*source); !s.ok()) return s;
  SamplingOptions sampling;
  auto temperature = flags.GetDouble("temperature", 0.0);
  auto top_k = flags.GetInt("top_k", 0);
  auto top_p = flags.GetDouble("top_p", 1.0);
  auto seed = flags.GetInt("seed", 0);
  auto max_new = flags.GetInt("max_new_tokens", 64);
  for (const absl::Status& s : {temperature.status(), top_k.status(), top_p.status(), seed.status(),
                                max_new.status()}) {
    if (!s.ok()) return s;
  }
  if (*temperature < 0 || !(*top_p > 0 && *top_p <= 1) || *top_k < 0 || *max_new < 1) {
    return absl::InvalidArgumentError(
        "--temperature must be >= 0 (0: greedy), --top_p in (0, 1], --top_k >= 0, "
        "--max_new_tokens >= 1");
  }
  sampling.temperature = *temperature;
  sampling.top_k = static_cast<int>(*top_k);
  sampling.top_p = *top_p;
  sampling.seed = static_cast<uint64_t>(*seed);

  const std::string tokenizer_path = flags.Get("tokenizer", source->tokenizer_path);
  if (tokenizer_path.empty()) {
    return absl::NotFoundError(absl::StrCat("no tokenizer.model found for ", source->Describe(),
                                            " (beside it, in its run or data directory): pass --tokenizer"));
  }
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load(tokenizer_path, &error);
  if (!tokenizer) return absl::InvalidArgumentError(absl::StrCat(tokenizer_path, ": ", error));
  const int64_t vocab = source->config.model().vocab_size();
  if (tokenizer->vocab_size() > vocab) {
    return absl::InvalidArgumentError(absl::StrCat(tokenizer_path, ": ", tokenizer->vocab_size(),
                                                   " pieces, more than model.vocab_size = ", vocab,
                                                   ": not this model's tokenizer"));
  }
  std::vector<int32_t> ids;
  if (flags.Has("bos")) {
    if (tokenizer->bos_id() < 0) return absl::InvalidArgumentError(absl::StrCat(tokenizer_path, " has no BOS"));
    ids.push_back(tokenizer->bos_id());
  }
  std::vector<int32_t> prompt;
  if (!tokenizer->Encode(flags.Get("prompt"), &prompt, &error)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot encode --prompt: ", error));
  }
  ids.insert(ids.end(), prompt.begin(), prompt.end());
  if (ids.empty()) return absl::InvalidArgumentError("--prompt is empty");
  const int64_t max_len = source->config.model().max_seq_len();
  if (static_cast<int64_t>(ids.size()) >= max_len) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", ids.size(),
                                                   " tokens; model.max_seq_len = ", max_len,
                                                   " leaves no room to generate"));
  }
  const int64_t steps = std::min<int64_t>(*max_new, max_len - static_cast<int64_t>(ids.size()));

  auto model = LoadSourceModel(*source, DType::kF32);
  if (!model.ok()) return model.status();
  const bool stream = !flags.Has("no_stream");
  const size_t prompt_tokens = ids.size();
  Decoder decoder(**model, static_cast<int64_t>(prompt_tokens) + steps);
  const auto start = std::chrono::steady_clock::now();
  Tensor logits = decoder.Append(ids);
  const double prefill_s = Seconds(start);
  std::string printed;  // decoded text printed so far (decode all, print the new suffix)
  if (!tokenizer->Decode(ids, &printed, &error)) return absl::InternalError(error);
  if (stream) {
    std::printf("%s", printed.c_str());
    std::fflush(stdout);
  }
  const auto decode_start = std::chrono::steady_clock::now();
  int64_t generated = 0;
  bool stopped_at_eos = false;
  for (int64_t step = 0; step < steps; ++step) {
    const std::vector<double> row = logits.Rows(logits.dim(0) - 1, logits.dim(0)).ToDoubles();
    const int32_t next = SampleToken(row, sampling, static_cast<uint64_t>(step));
    ++generated;
    if (next == tokenizer->eos_id()) {
      stopped_at_eos = true;
      break;
    }
    ids.push_back(next);
    std::string text;
    if (!tokenizer->Decode(ids, &text, &error)) return absl::InternalError(error);
    // A piece may end inside a UTF-8 character: print only once the text grew past it.
    if (stream && text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
      std::printf("%s", text.substr(printed.size()).c_str());
      std::fflush(stdout);
      printed = text;
    } else if (!stream) {
      printed = text;
    }
    if (step + 1 < steps) logits = decoder.Append({next});
  }
  std::string final_text;
  if (!tokenizer->Decode(ids, &final_text, &error)) return absl::InternalError(error);
  if (stream) {
    if (final_text.size() > printed.size()) std::printf("%s", final_text.substr(printed.size()).c_str());
    std::printf("\n");
  } else {
    std::printf("%s\n", final_text.c_str());
  }
  const double decode_s = Seconds(decode_start);
  std::fflush(stdout);  // the text first, then the timings (one log when both are redirected)
  std::fprintf(stderr,
               "[generate] %s | prompt %zu tokens in %.2f s | %lld new tokens in %.2f s (%.1f tok/s)%s\n",
               source->Describe().c_str(), prompt_tokens, prefill_s, static_cast<long long>(generated),
               decode_s, decode_s > 0 ? generated / decode_s : 0.0, stopped_at_eos ? " | stopped at EOS" : "");
  return absl::OkStatus();
}

}  // namespace

int GenerateCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"ckpt", "run, checkpoint, upcycle output or Hugging Face directory", false, false, true},
      {"prompt", "text to continue", false, false, true},
      {"max_new_tokens", "tokens to generate at most (default 64; stops at EOS)", false, false, false},
      {"temperature", "0 (default): greedy; > 0: sample from softmax(logits / T)", false, false, false},
      {"top_k", "sample among the k most likely tokens (0: all)", false, false, false},
      {"top_p", "sample among the most likely tokens holding this mass (default 1)", false, false, false},
      {"seed", "sampling seed (default 0): the same seed gives the same text", false, false, false},
      {"tokenizer", "tokenizer.model (default: found beside the checkpoint)", false, false, false},
      {"bos", "prepend the tokenizer's BOS (HF Llama models expect it)", true, false, false},
      {"no_stream", "print the text once at the end", true, false, false},
      {"set", "override a routing field (repeatable)", false, true, false},
      {"help", "print this help", true, false, false},
  };
  int code = 0;
  std::optional<Flags> flags = ParseCommandFlags("generate", args, specs, &code);
  if (!flags) return code;
  if (absl::Status s = Generate(*flags); !s.ok()) return ReportError("generate", s);
  return 0;
}

}  // namespace sb
