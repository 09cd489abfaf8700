#include "launch/init_from.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "launch/hf_convert.h"
#include "launch/model_source.h"
#include "moe/io/model_weights.h"

namespace sb {

absl::Status InitModelFrom(const std::string& path, const TrainConfig& config, Model& model,
                           std::string* description) {
  absl::StatusOr<ModelSource> source = OpenModelSource(path);
  if (!source.ok()) return source.status();
  const std::vector<std::string> diffs = ArchitectureDiffs(
      source->config, path, config, "the config", source->kind == ModelSource::Kind::kHuggingFace);
  if (!diffs.empty()) {
    const bool upcycling = MoeLayerMask(source->config) != MoeLayerMask(config);
    return absl::InvalidArgumentError(absl::StrCat(
        "--init_from ", path, ": the weights do not fit the config: ", absl::StrJoin(diffs, "; "),
        upcycling ? " (to turn a dense model into an MoE, run switchboard upcycle first)" : ""));
  }
  if (absl::Status s = LoadModelWeights(model, *source->weights); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("--init_from: ", s.message()));
  }
  *description = source->Describe();
  return absl::OkStatus();
}

std::string InitFromTokenizer(const std::string& path) {
  absl::StatusOr<ModelSource> source = OpenModelSource(path);
  return source.ok() ? source->tokenizer_path : "";
}

}  // namespace sb
