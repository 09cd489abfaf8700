// switchboard export-hf --ckpt C --out HF_DIR [--dtype float32|bfloat16]
//     [--max_shard_mb N] [--set a.b=v]... [--tokenizer M] [--add_bos_token] [--overwrite]
// C: a run, checkpoint, upcycle output or Hugging Face directory
// (launch/model_source.h). See launch/export_hf.h and docs/upcycling.md.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "launch/command_util.h"
#include "launch/export_hf.h"
#include "launch/hf_convert.h"
#include "launch/model_source.h"

namespace sb {

int ExportHfCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"ckpt", "run, checkpoint, upcycle output or Hugging Face directory", false, false, true},
      {"out", "output directory (must not exist unless --overwrite)", false, false, true},
      {"dtype", "float32 (default, lossless) or bfloat16", false, false, false},
      {"max_shard_mb", "shard the weights above this size (default 5000 MB, as transformers)",
       false, false, false},
      {"set", "override a routing field first, e.g. --set moe.capacity_factor_eval=0", false, true,
       false},
      {"tokenizer", "tokenizer.model to ship (default: found beside the checkpoint)", false, false,
       false},
      {"add_bos_token", "tokenizer_config.json: prepend BOS when encoding (Llama's habit)", true,
       false, false},
      {"overwrite", "replace an existing --out", true, false, false},
      {"help", "print this help", true, false, false},
  };
  int code = 0;
  std::optional<Flags> flags = ParseCommandFlags("export-hf", args, specs, &code);
  if (!flags) return code;
  absl::StatusOr<ModelSource> source = OpenModelSource(flags->Get("ckpt"));
  if (!source.ok()) return ReportError("export-hf", source.status());
  if (absl::Status s = ApplyOverrides(flags->All("set"), &*source); !s.ok()) {
    return ReportError("export-hf", s);
  }
  ExportHfOptions options;
  options.out = flags->Get("out");
  options.dtype = flags->Get("dtype", "float32");
  options.add_bos_token = flags->Has("add_bos_token");
  options.overwrite = flags->Has("overwrite");
  absl::StatusOr<double> shard_mb = flags->GetDouble("max_shard_mb", kDefaultMaxShardBytes / 1e6);
  if (!shard_mb.ok()) return ReportError("export-hf", shard_mb.status());
  if (!(*shard_mb > 0)) return ReportError("export-hf", absl::InvalidArgumentError("--max_shard_mb must be > 0"));
  options.max_shard_bytes = static_cast<int64_t>(*shard_mb * 1e6);
  // Refuse what HF cannot represent before loading anything.
  absl::StatusOr<HfConfig> hf = HfConfigFromTrainConfig(source->config, options.dtype);
  if (!hf.ok()) return ReportError("export-hf", hf.status());
  auto model = LoadSourceModel(*source, DType::kF32);
  if (!model.ok()) return ReportError("export-hf", model.status());
  const std::string tokenizer = flags->Get("tokenizer", source->tokenizer_path);
  if (absl::Status s = ExportHf(**model, source->config, tokenizer, options); !s.ok()) {
    return ReportError("export-hf", s);
  }
  std::printf("exported %s as Hugging Face %s (%s, %.2fM parameters%s) to %s\n",
              source->Describe().c_str(),
              hf->is_moe() ? "MixtralForCausalLM" : "LlamaForCausalLM", options.dtype.c_str(),
              (*model)->NumParameters() / 1e6,
              tokenizer.empty() ? ", no tokenizer found: pass --tokenizer" : ", tokenizer.model",
              options.out.c_str());
  return 0;
}

}  // namespace sb
