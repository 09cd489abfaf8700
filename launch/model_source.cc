#include "launch/model_source.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "launch/checkpoint.h"
#include "launch/hf_convert.h"
#include "launch/model_factory.h"
#include "moe/io/hf_checkpoint.h"
#include "moe/io/model_weights.h"
#include "moe/io/safetensors_set.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

bool IsFile(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The first tokenizer.model among the usual places (see the header).
std::string FindTokenizer(const ModelSource& s) {
  std::vector<fs::path> candidates = {fs::path(s.path) / "tokenizer.model"};
  if (s.kind == ModelSource::Kind::kCheckpoint) {
    candidates.push_back(fs::path(s.path).parent_path().parent_path() / "tokenizer.model");
  }
  const auto& data = s.config.data();
  if (!data.tokenizer_path().empty()) candidates.push_back(data.tokenizer_path());
  std::vector<std::string> data_paths = {data.train_path(), data.val_path()};
  for (const auto& component : data.train_mixture()) data_paths.push_back(component.path());
  for (const std::string& p : data_paths) {
    if (p.empty()) continue;
    candidates.push_back(fs::path(p) / "tokenizer.model");
    candidates.push_back(fs::path(p).parent_path() / "tokenizer.model");
  }
  for (const fs::path& c : candidates)
    if (IsFile(c)) return c.string();
  return "";
}

absl::Status OpenCheckpointDir(const std::string& step_dir, ModelSource* s) {
  absl::StatusOr<switchboard::TrainerState> state = ReadTrainerState(step_dir);
  if (!state.ok()) return state.status();
  s->kind = ModelSource::Kind::kCheckpoint;
  s->path = step_dir;
  s->step = state->step();
  s->config = state->config();
  auto weights = SafetensorsSet::Open((fs::path(step_dir) / kSafetensorsIndexFile).string());
  if (!weights.ok()) return weights.status();
  s->weights = *std::move(weights);
  return absl::OkStatus();
}

}  // namespace

std::string ModelSource::Describe() const {
  switch (kind) {
    case Kind::kHuggingFace: return absl::StrCat("Hugging Face model ", path);
    case Kind::kCheckpoint: return absl::StrCat("checkpoint ", path, " (step ", step, ")");
    case Kind::kWeights: return absl::StrCat("weights ", path);
  }
  return path;
}

absl::StatusOr<ModelSource> OpenModelSource(const std::string& path) {
  ModelSource s;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": not a directory (want a run, checkpoint, "
                                            "upcycle output or Hugging Face model directory)"));
  }
  const fs::path dir(path);
  if (HfCheckpoint::IsHfDir(path)) {
    auto hf = HfCheckpoint::Open(path);
    if (!hf.ok()) return hf.status();
    s.kind = ModelSource::Kind::kHuggingFace;
    s.path = path;
    s.config = ResolvedConfig(TrainConfigFromHf((*hf)->config()));
    s.weights = *std::move(hf);
  } else if (IsFile(dir / kTrainerStateFile)) {
    if (absl::Status st = OpenCheckpointDir(path, &s); !st.ok()) return st;
  } else if (HasCheckpoint(path)) {
    absl::StatusOr<std::string> latest = LatestCheckpoint(path);
    if (!latest.ok()) return latest.status();
    if (absl::Status st = OpenCheckpointDir(*latest, &s); !st.ok()) return st;
  } else if (IsFile(dir / kWeightsConfigFile)) {
    auto config = LoadConfigFile((dir / kWeightsConfigFile).string());
    if (!config.ok()) return config.status();
    s.kind = ModelSource::Kind::kWeights;
    s.path = path;
    s.config = ResolvedConfig(*config);
    auto weights = SafetensorsSet::Open(path);
    if (!weights.ok()) return weights.status();
    s.weights = *std::move(weights);
  } else {
    return absl::NotFoundError(absl::StrCat(
        path, ": not a model directory: no config.json (Hugging Face), ", kTrainerStateFile,
        " (checkpoint), checkpoints/latest (run) or ", kWeightsConfigFile, " (upcycle output)"));
  }
  if (absl::Status st = ValidateConfig(s.config, 1); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(s.Describe(), ": its config: ", st.message()));
  }
  s.tokenizer_path = FindTokenizer(s);
  return s;
}

absl::Status ApplyOverrides(const std::vector<std::string>& assignments, ModelSource* source) {
  TrainConfig config = source->config;
  for (const std::string& a : assignments) {
    if (absl::Status s = ApplyOverride(a, &config); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", a, ": ", s.message()));
    }
  }
  const std::vector<std::string> diffs =
      ArchitectureDiffs(source->config, source->path, config, "--set");
  if (!diffs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--set may change routing and evaluation settings, not the architecture of the "
        "weights: ", absl::StrJoin(diffs, "; ")));
  }
  if (absl::Status s = ValidateConfig(config, 1); !s.ok()) return s;
  source->config = config;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Model>> LoadSourceModel(const ModelSource& source, DType dtype) {
  if (absl::Status s = ValidateConfig(source.config, 1); !s.ok()) return s;
  auto model = std::make_unique<Model>(ModelOptionsFromConfig(source.config), nullptr, dtype,
                                       Device::kCpu);
  if (absl::Status s = LoadModelWeights(*model, *source.weights); !s.ok()) return s;
  return model;
}

}  // namespace sb
