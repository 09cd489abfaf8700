// Loading, overriding and validating a TrainConfig (configs/switchboard.proto).
// Every error names the field or file it is about.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "configs/switchboard.pb.h"

namespace sb {

using switchboard::TrainConfig;

// Parses a text-format TrainConfig file. Unknown fields, syntax errors,
// unreadable files and files above kMaxConfigFileBytes are errors naming the
// file, line and field.
absl::StatusOr<TrainConfig> LoadConfigFile(const std::string& path);
// Real configs are a few KiB (an explicit moe_layers list for 4096 layers
// is ~20 KiB).
inline constexpr size_t kMaxConfigFileBytes = 1 << 20;
absl::StatusOr<TrainConfig> ParseConfigText(const std::string& text, const std::string& origin);
// The same rules for any message of switchboard.proto (checkpoints' TrainerState).
absl::Status ParseTextMessage(const std::string& text, const std::string& origin,
                              google::protobuf::Message* message);

// Applies "a.b.c=value" through protobuf reflection. Scalars (numbers, bools,
// strings, enum names) are replaced; a repeated field takes a comma-separated
// list ("moe.moe_layers=1,3") and replaces its whole contents.
// Details: whitespace around the path, the value and list items is ignored;
// integers are range-checked for their type; bools are true/false/1/0; enums
// by name, case-insensitive (optimizer.name=ADAFACTOR); strings are taken
// raw, without quotes (data.train_path=runs/x); an empty value clears a
// repeated field and sets a string to "". An unknown path, a path through a
// non-message, a message-valued path or a bad value is InvalidArgument naming
// the path and value, and leaves *config unchanged.
absl::Status ApplyOverride(const std::string& assignment, TrainConfig* config);

// Checks every field and cross-field rule (sizes positive, top_k <= experts,
// heads % kv_heads == 0, experts % expert_parallel_size == 0, world_size %
// expert_parallel_size == 0, ...). world_size = ranks of the job.
// Returns InvalidArgument listing every violation, one per line (non-finite
// numbers first, then schema order), each naming its field(s) and value(s):
// "moe.top_k = 9 exceeds moe.num_experts = 8".
absl::Status ValidateConfig(const TrainConfig& config, int world_size);

// Text format of the config with every default made explicit (for run dirs).
std::string ResolvedConfigText(const TrainConfig& config);
// The config with every unset singular field set to its default (checkpoints).
TrainConfig ResolvedConfig(const TrainConfig& config);

// [num_layers] true where block i is an MoE layer (moe_layers or interval).
std::vector<bool> MoeLayerMask(const TrainConfig& config);

}  // namespace sb
