// JSON parsing for headers from the outside world: nlohmann::json with its
// exceptions turned into Status, plus the check a DOM cannot make afterwards:
// a key repeated inside one object (nlohmann and Python's json keep the last
// one silently; in a safetensors header that would hide a tensor).
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace sb {

// Errors start with `label` (the file). Nesting depth is bounded only by
// memory: nlohmann parses and destroys without recursion.
absl::StatusOr<nlohmann::json> ParseJsonStrict(absl::string_view label, absl::string_view text);

}  // namespace sb
