// switchboard upcycle --from HF_DIR --config moe.textproto --out DIR
//     [--set a.b=v]... [--expert_from DIR]... [--router_prompts FILE]
//     [--tokenizer M] [--max_shard_mb N] [--overwrite]
// Writes a weights directory (config.textproto, model.safetensors,
// tokenizer.model) that `train --init_from DIR` starts from and that
// generate / eval / export-hf read (launch/upcycle.h, docs/upcycling.md).
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "launch/command_util.h"
#include "launch/upcycle.h"
#include "moe/io/sharded_weights.h"

namespace sb {

int UpcycleCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"from", "dense Hugging Face Llama directory (config.json + safetensors)", false, false, true},
      {"config", "TrainConfig of the MoE (configs/*.textproto)", false, false, true},
      {"out", "output directory (must not exist unless --overwrite)", false, false, true},
      {"set", "override a config field: --set moe.top_k=2 (repeatable)", false, true, false},
      {"expert_from", "dense donor of expert e, in expert order (repeat once per expert)", false,
       true, false},
      {"router_prompts", "JSON prompts per expert: routers from hidden states (docs/upcycling.md)",
       false, false, false},
      {"tokenizer", "tokenizer.model for --router_prompts (default: --from's)", false, false, false},
      {"max_shard_mb", "shard the weights above this size (default 5000 MB)", false, false, false},
      {"overwrite", "replace an existing --out", true, false, false},
      {"help", "print this help", true, false, false},
  };
  int code = 0;
  std::optional<Flags> flags = ParseCommandFlags("upcycle", args, specs, &code);
  if (!flags) return code;
  const std::string config_path = flags->Get("config");
  absl::StatusOr<TrainConfig> config = LoadConfigFile(config_path);
  if (!config.ok()) return ReportError("upcycle", config.status());
  for (const std::string& a : flags->All("set")) {
    if (absl::Status s = ApplyOverride(a, &*config); !s.ok()) {
      return ReportError("upcycle", absl::InvalidArgumentError(absl::StrCat("--set ", a, ": ", s.message())));
    }
  }
  absl::StatusOr<double> shard_mb = flags->GetDouble("max_shard_mb", kDefaultMaxShardBytes / 1e6);
  if (!shard_mb.ok()) return ReportError("upcycle", shard_mb.status());
  if (!(*shard_mb > 0)) {
    return ReportError("upcycle", absl::InvalidArgumentError("--max_shard_mb must be > 0"));
  }
  UpcycleOptions options;
  options.from = flags->Get("from");
  options.expert_from = flags->All("expert_from");
  options.router_prompts = flags->Get("router_prompts");
  options.tokenizer = flags->Get("tokenizer");
  auto result = Upcycle(*config, config_path, options, DType::kF32);
  if (!result.ok()) return ReportError("upcycle", result.status());
  for (const std::string& line : result->report) std::printf("%s\n", line.c_str());
  std::map<std::string, std::string> metadata = {{"switchboard_upcycled_from", options.from}};
  const std::string out = flags->Get("out");
  if (absl::Status s = WriteWeightsDir(out, *result->model, ResolvedConfig(*config),
                                       result->tokenizer_path, metadata,
                                       static_cast<int64_t>(*shard_mb * 1e6), flags->Has("overwrite"));
      !s.ok()) {
    return ReportError("upcycle", s);
  }
  std::printf("wrote %s: %.2fM parameters (%s)\nnext: switchboard train --config %s --init_from %s\n",
              out.c_str(), result->model->NumParameters() / 1e6,
              result->tokenizer_path.empty() ? "no tokenizer.model in --from"
                                             : "tokenizer.model copied",
              config_path.c_str(), out.c_str());
  return 0;
}

}  // namespace sb
