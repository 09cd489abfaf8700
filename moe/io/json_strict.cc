#include "moe/io/json_strict.h"

#include <exception>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "moe/io/safetensors_header.h"

namespace sb {

using json = nlohmann::json;

absl::StatusOr<json> ParseJsonStrict(absl::string_view label, absl::string_view text) {
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore
  // whatever follows; valid JSON never holds a raw NUL, so refuse it.
  if (text.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": not valid UTF-8 JSON: NUL byte at offset ", text.find('\0')));
  }
  std::vector<std::set<std::string>> open_objects;  // keys seen in each open object
  std::optional<std::string> duplicate;
  const json::parser_callback_t track_keys = [&](int /*depth*/, json::parse_event_t event,
                                                 json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: open_objects.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() && !duplicate &&
            !open_objects.back().insert(parsed.get<std::string>()).second) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    json root = json::parse(text.begin(), text.end(), track_keys);
    if (duplicate) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": name ", QuoteTensorName(*duplicate), " appears twice"));
    }
    return root;
  } catch (const json::parse_error& e) {  // says where and what: "unexpected end of input"
    return absl::InvalidArgumentError(absl::StrCat(label, ": not valid UTF-8 JSON: ", e.what()));
  } catch (const std::exception& e) {  // allocation failure: still not a crash
    return absl::ResourceExhaustedError(absl::StrCat(label, ": cannot parse JSON: ", e.what()));
  }
}

}  // namespace sb
