// train --init_from DIR: a new run that starts from existing weights (a
// checkpoint, an upcycle output or a Hugging Face directory; see
// launch/model_source.h) instead of a random init. Weights only: the
// optimizer state, the step counter, the data cursor and the schedule start
// fresh, unlike --resume, which continues a run. The run's config must
// describe the same architecture (an error names each differing field and
// both values); routing, optimizer and data settings are the run's own.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "configs/config.h"
#include "moe/model.h"

namespace sb {

// Loads `path`'s weights into `model` (this rank's expert shard; every rank
// reads the files). *description names the source ("checkpoint ... (step 600)").
absl::Status InitModelFrom(const std::string& path, const TrainConfig& config, Model& model,
                           std::string* description);

// The tokenizer.model that goes with `path`'s weights, or "" (none found, or
// `path` unreadable: InitModelFrom reports that). train sets
// data.tokenizer_path to it when unset, so that training data from another
// tokenizer is refused at startup instead of silently scrambling the model.
std::string InitFromTokenizer(const std::string& path);

}  // namespace sb
