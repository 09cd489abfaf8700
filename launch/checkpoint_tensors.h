// Optimizer state by global name, the companion of moe/io/model_weights.h
// for checkpoints: Optimizer::State() keeps expert slots as local stacks
// ("...experts.{expert}.w1.weight.exp_avg" [E_local, F, D]); here they are
// split into one tensor per expert under its global id
// ("...experts.5.w1.weight.exp_avg" [F, D]), so that state saved by one
// expert-parallel layout loads into any other.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "moe/io/safetensors_set.h"
#include "moe/model.h"
#include "optim/optimizer.h"

namespace sb {

struct NamedState {
  std::string name;  // "<parameter slice name>.<slot>"
  Tensor view;       // aliases the optimizer's live state
  const Parameter* param = nullptr;
  std::string slot;  // "exp_avg", "row", ...
};

// The optimizer's State() split by expert. InvalidArgument when a state
// name does not start with a parameter's name or an expert slot's dim 0 is
// not that parameter's E_local (an optimizer that breaks State()'s contract).
absl::StatusOr<std::vector<NamedState>> NamedOptimizerState(Optimizer& optimizer,
                                                            const std::vector<Parameter*>& params);

// Every weight name of the model in any expert-parallel layout (all global
// expert ids): what a complete checkpoint holds.
std::set<std::string> AllWeightNames(const std::vector<Parameter*>& params, int64_t num_experts);

// The same for state names: `state` (this rank's, local experts) with every
// expert name repeated for all global ids.
std::set<std::string> AllStateNames(const std::vector<NamedState>& state,
                                    const std::vector<Parameter*>& params, int64_t num_experts);

// Copies every entry of `state` from `file` (by name). All names, shapes and
// dtypes are checked first; on error nothing has been copied, and the message
// names the file and the first missing or mismatched tensors.
absl::Status LoadNamedState(const std::vector<NamedState>& state, const SafetensorsSet& file);

}  // namespace sb
