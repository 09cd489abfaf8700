// libFuzzer target for the config front door: ParseConfigText, ApplyOverride
// and ValidateConfig, the code every --config file and --set flag (and every
// checkpoint's trainer_state.textproto, through the same text-format parser)
// goes through. Input layout:
//   byte 0          world size for ValidateConfig: 1 + (byte % 16)
//   up to a NUL     TrainConfig text
//   then, split at NULs, "a.b.c=value" overrides applied in order
// Besides crashes, leaks and UB (ASan, UBSan), it checks the promises the
// callers rely on: errors carry a message; a rejected override leaves the
// config unchanged; the resolved text of any config parses back to the same
// resolved config (run directories and checkpoints store that text); a
// valid config's MoE block mask has num_layers entries.
// Build and run: docs/checkpoints.md ("Fuzzing").
#include <cstdint>
#include <string>
#include <vector>

#include "configs/config.h"
#include "tests/testing/proto_equal.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

bool SameConfig(const sb::TrainConfig& a, const sb::TrainConfig& b) {
  return sb::testing::SameMessage(a, b);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int world_size = 1 + data[0] % 16;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<std::string> parts;
  size_t begin = 0;
  for (;;) {
    const size_t nul = rest.find('\0', begin);
    parts.push_back(rest.substr(begin, nul == std::string::npos ? nul : nul - begin));
    if (nul == std::string::npos) break;
    begin = nul + 1;
  }

  absl::StatusOr<sb::TrainConfig> parsed = sb::ParseConfigText(parts[0], "fuzz");
  sb::TrainConfig config;
  if (parsed.ok()) {
    config = *parsed;
  } else {
    Require(!parsed.status().message().empty());  // overrides still run on the defaults
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    const sb::TrainConfig before = config;
    const absl::Status s = sb::ApplyOverride(parts[i], &config);
    if (!s.ok()) Require(!s.message().empty() && SameConfig(before, config));
  }
  const absl::Status valid = sb::ValidateConfig(config, world_size);
  if (!valid.ok()) Require(!valid.message().empty());

  const std::string resolved_text = sb::ResolvedConfigText(config);
  absl::StatusOr<sb::TrainConfig> back = sb::ParseConfigText(resolved_text, "resolved");
  Require(back.ok() && SameConfig(*back, sb::ResolvedConfig(config)));
  if (valid.ok()) {
    Require(static_cast<int64_t>(sb::MoeLayerMask(config).size()) == config.model().num_layers());
  }
  return 0;
}
