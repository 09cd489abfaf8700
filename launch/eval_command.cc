// switchboard eval --ckpt C --data DIR [--batch_size B] [--seq_len S]
//     [--max_windows N] [--set a.b=v]... [--json FILE] [--no_progress]
// Validation loss, perplexity and per-layer routing statistics (launch/evaluate.h).
// DIR: a prepared dataset (its val/ is used) or a directory of token shards.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "data/shard_format.h"
#include "launch/command_util.h"
#include "launch/evaluate.h"
#include "launch/model_source.h"
#include "moe/io/file_util.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

absl::Status Eval(const Flags& flags) {
  absl::StatusOr<ModelSource> source = OpenModelSource(flags.Get("ckpt"));
  if (!source.ok()) return source.status();
  if (absl::Status s = ApplyOverrides(flags.All("set"), &*source); !s.ok()) return s;
  const TrainConfig& config = source->config;
  auto batch = flags.GetInt("batch_size", config.train().micro_batch_size());
  auto seq = flags.GetInt("seq_len", config.train().seq_len());
  auto max_windows = flags.GetInt("max_windows", 0);
  for (const absl::Status& s : {batch.status(), seq.status(), max_windows.status()}) {
    if (!s.ok()) return s;
  }
  std::string data_path = flags.Get("data");
  std::error_code ec;
  if (fs::is_directory(fs::path(data_path) / "val", ec)) data_path = (fs::path(data_path) / "val").string();
  ShardSourceOptions data_options;
  if (!source->tokenizer_path.empty()) {
    // The data must come from the model's tokenizer.
    absl::StatusOr<std::string> bytes = ReadSmallFile(source->tokenizer_path, 1 << 30);
    if (!bytes.ok()) return bytes.status();
    data_options.expected_tokenizer_hash = TokenizerHash(*bytes);
    data_options.expected_tokenizer_origin = source->tokenizer_path;
  }
  auto data = ShardSource::Open(data_path, data_options);
  if (!data.ok()) return absl::Status(data.status().code(), absl::StrCat("--data: ", data.status().message()));
  auto model = LoadSourceModel(*source, DType::kF32);
  if (!model.ok()) return model.status();

  EvalOptions options;
  options.batch_size = static_cast<int>(*batch);
  options.seq_len = static_cast<int>(*seq);
  options.max_windows = *max_windows;
  options.progress = !flags.Has("no_progress");
  auto r = EvaluateModel(**model, **data, options);
  if (!r.ok()) return r.status();
  const auto& moe = config.moe();
  std::printf("eval: %s on %s\n", source->Describe().c_str(), data_path.c_str());
  std::printf("  %lld windows x %d tokens = %lld tokens, batches of %d, %.1f s (%.0f tok/s)\n",
              static_cast<long long>(r->windows), options.seq_len, static_cast<long long>(r->tokens),
              options.batch_size, r->seconds, r->seconds > 0 ? r->tokens / r->seconds : 0.0);
  std::printf("  loss %.4f nats/token | perplexity %.2f\n", r->loss, r->perplexity);
  if (!r->layers.empty()) {
    std::printf("  routing: %d experts, top-%d %s, capacity_factor_eval %g%s\n", moe.num_experts(),
                moe.top_k(), moe.normalize_top_k() ? "renormalised" : "raw gates",
                moe.capacity_factor_eval(), moe.capacity_factor_eval() <= 0 ? " (dropless)" : "");
    std::printf("  %5s %8s %8s %7s %8s %22s\n", "block", "dropped", "entropy", "aux", "z",
                "expert share min/max");
    for (const LayerEvalStats& s : r->layers) {
      int64_t total = 0;
      for (int64_t c : s.routed) total += c;
      const auto [lo, hi] = std::minmax_element(s.routed.begin(), s.routed.end());
      std::printf("  %5d %7.2f%% %8.3f %7.3f %8.3f %10.3f / %-10.3f\n", s.layer,
                  100 * s.dropped_fraction(), s.entropy, s.aux_loss, s.z_loss,
                  total ? static_cast<double>(*lo) / total : 0.0,
                  total ? static_cast<double>(*hi) / total : 0.0);
    }
  }
  if (flags.Has("json")) {
    std::ofstream out(flags.Get("json"));
    out << EvalResultJson(*r);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", flags.Get("json")));
  }
  return absl::OkStatus();
}

}  // namespace

int EvalCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"ckpt", "run, checkpoint, upcycle output or Hugging Face directory", false, false, true},
      {"data", "prepared dataset (its val/ is used) or a directory of token shards", false, false, true},
      {"batch_size", "windows per forward pass (default train.micro_batch_size)", false, false, false},
      {"seq_len", "tokens per window (default train.seq_len)", false, false, false},
      {"max_windows", "evaluate at most this many windows (default: all)", false, false, false},
      {"set", "override a routing field, e.g. --set moe.capacity_factor_eval=0", false, true, false},
      {"json", "also write the results (per-expert counts too) as JSON to this file", false, false, false},
      {"no_progress", "no progress line on stderr", true, false, false},
      {"help", "print this help", true, false, false},
  };
  int code = 0;
  std::optional<Flags> flags = ParseCommandFlags("eval", args, specs, &code);
  if (!flags) return code;
  if (absl::Status s = Eval(*flags); !s.ok()) return ReportError("eval", s);
  return 0;
}

}  // namespace sb
