// A trained model to read, as `generate --ckpt`, `eval --ckpt`,
// `export-hf --ckpt` and `train --init_from` accept it:
//   a Hugging Face directory   config.json + safetensors (HfCheckpoint; Llama
//                              or Mixtral, transformers 5's fused layout too)
//   a run directory            its checkpoints/latest
//   a checkpoint directory     run/checkpoints/step_N (trainer_state.textproto:
//                              the config of the run that saved it)
//   a weights directory        config.textproto + model.safetensors or
//                              model.safetensors.index.json: what `upcycle` writes
// The tokenizer is looked up beside the weights (tokenizer.model), then in
// the run directory, data.tokenizer_path, and the training data's directory
// and its parent (where prepare-data writes it).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "moe/io/weight_reader.h"
#include "moe/model.h"

namespace sb {

struct ModelSource {
  enum class Kind { kHuggingFace, kCheckpoint, kWeights };
  Kind kind = Kind::kWeights;
  std::string path;  // the directory holding the weights
  // The model's TrainConfig (resolved: every default explicit). For HF
  // directories, TrainConfigFromHf (launch/hf_convert.h).
  TrainConfig config;
  std::unique_ptr<WeightReader> weights;
  std::string tokenizer_path;  // "" when none was found
  std::string Describe() const;  // "checkpoint runs/x/checkpoints/step_600 (step 600)"
  int64_t step = 0;              // checkpoints: the saved step
};

inline constexpr const char* kWeightsConfigFile = "config.textproto";

absl::StatusOr<ModelSource> OpenModelSource(const std::string& path);

// Applies --set overrides to source.config; routing and evaluation fields
// may change, the architecture may not (an error names the field). Then
// validates the config for one rank.
absl::Status ApplyOverrides(const std::vector<std::string>& assignments, ModelSource* source);

// The source's model in `dtype` on the CPU (one expert-parallel rank).
absl::StatusOr<std::unique_ptr<Model>> LoadSourceModel(const ModelSource& source, DType dtype);

}  // namespace sb
