// ApplyOverride: `--set a.b.c=value` on a TrainConfig through protobuf
// reflection. The path is walked field by field through sub-messages; the
// value is parsed for the leaf's type (integers with range checks, numbers,
// bools, enum names, raw strings; repeated fields take a comma-separated
// list that replaces the whole contents). Nothing changes unless the whole
// assignment is valid.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "configs/config.h"

namespace sb {
namespace {

namespace pb = google::protobuf;
using FD = pb::FieldDescriptor;

// "num_experts, top_k, ..." for error messages.
std::string FieldNames(const pb::Descriptor* descriptor) {
  std::vector<std::string> names;
  for (int i = 0; i < descriptor->field_count(); ++i) names.push_back(descriptor->field(i)->name());
  return absl::StrJoin(names, ", ");
}

// What a value of `field` must look like, for error messages.
std::string ValueHint(const FD* field) {
  switch (field->cpp_type()) {
    case FD::CPPTYPE_INT32:
      return absl::StrCat("an int32 in [", std::numeric_limits<int32_t>::min(), ", ",
                          std::numeric_limits<int32_t>::max(), "]");
    case FD::CPPTYPE_INT64: return "an int64";
    case FD::CPPTYPE_UINT32: return "a uint32 (integer >= 0)";
    case FD::CPPTYPE_UINT64: return "a uint64 (integer >= 0)";
    case FD::CPPTYPE_DOUBLE:
    case FD::CPPTYPE_FLOAT: return "a number (e.g. 3e-4)";
    case FD::CPPTYPE_BOOL: return "true, false, 1 or 0";
    case FD::CPPTYPE_ENUM: {
      std::vector<std::string> names;
      const pb::EnumDescriptor* e = field->enum_type();
      for (int i = 0; i < e->value_count(); ++i) names.push_back(e->value(i)->name());
      return absl::StrCat("one of ", absl::StrJoin(names, ", "));
    }
    case FD::CPPTYPE_STRING: return "a string";
    case FD::CPPTYPE_MESSAGE: return "a message";
  }
  return "?";
}

// Parses `text` for `field` and sets it (singular) or appends it (repeated).
// Returns false when `text` is not a valid value; `message` is then unchanged.
bool SetOrAdd(pb::Message* message, const FD* field, absl::string_view text) {
  const pb::Reflection* r = message->GetReflection();
  const bool add = field->is_repeated();
  switch (field->cpp_type()) {
    case FD::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      add ? r->AddInt32(message, field, v) : r->SetInt32(message, field, v);
      return true;
    }
    case FD::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      add ? r->AddInt64(message, field, v) : r->SetInt64(message, field, v);
      return true;
    }
    case FD::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      add ? r->AddUInt32(message, field, v) : r->SetUInt32(message, field, v);
      return true;
    }
    case FD::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(text, &v)) return false;
      add ? r->AddUInt64(message, field, v) : r->SetUInt64(message, field, v);
      return true;
    }
    case FD::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(text, &v)) return false;
      add ? r->AddDouble(message, field, v) : r->SetDouble(message, field, v);
      return true;
    }
    case FD::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(text, &v)) return false;
      add ? r->AddFloat(message, field, v) : r->SetFloat(message, field, v);
      return true;
    }
    case FD::CPPTYPE_BOOL: {
      bool v;
      if (absl::EqualsIgnoreCase(text, "true") || text == "1") {
        v = true;
      } else if (absl::EqualsIgnoreCase(text, "false") || text == "0") {
        v = false;
      } else {
        return false;
      }
      add ? r->AddBool(message, field, v) : r->SetBool(message, field, v);
      return true;
    }
    case FD::CPPTYPE_ENUM: {
      // By name only (numbers are an encoding detail); case-insensitive.
      const pb::EnumDescriptor* e = field->enum_type();
      for (int i = 0; i < e->value_count(); ++i) {
        if (!absl::EqualsIgnoreCase(text, e->value(i)->name())) continue;
        add ? r->AddEnum(message, field, e->value(i)) : r->SetEnum(message, field, e->value(i));
        return true;
      }
      return false;
    }
    case FD::CPPTYPE_STRING: {
      const std::string v(text);
      add ? r->AddString(message, field, v) : r->SetString(message, field, v);
      return true;
    }
    case FD::CPPTYPE_MESSAGE: return false;
  }
  return false;
}

}  // namespace

absl::Status ApplyOverride(const std::string& assignment, TrainConfig* config) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--set ", assignment, ": expected path=value, e.g. moe.top_k=2"));
  }
  const std::string path(absl::StripAsciiWhitespace(assignment.substr(0, eq)));
  const absl::string_view value = absl::StripAsciiWhitespace(
      absl::string_view(assignment).substr(eq + 1));
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("--set ", assignment, ": ", what));
  };

  // Work on a copy so that a failed assignment leaves *config untouched.
  TrainConfig updated = *config;
  pb::Message* message = &updated;
  const FD* field = nullptr;
  std::string walked;  // the dotted path resolved so far
  const std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].empty()) return error(absl::StrCat("empty component in path '", path, "'"));
    const pb::Descriptor* descriptor = message->GetDescriptor();
    field = descriptor->FindFieldByName(parts[i]);
    if (field == nullptr) {
      return error(absl::StrCat("unknown field '", path, "': ",
                                walked.empty() ? "TrainConfig" : walked, " has no field '",
                                parts[i], "' (fields: ", FieldNames(descriptor), ")"));
    }
    walked = walked.empty() ? parts[i] : absl::StrCat(walked, ".", parts[i]);
    if (i + 1 == parts.size()) break;
    if (field->cpp_type() != FD::CPPTYPE_MESSAGE || field->is_repeated()) {
      return error(absl::StrCat("'", walked, "' is not a message, so '", path,
                                "' names no field"));
    }
    message = message->GetReflection()->MutableMessage(message, field);
  }
  if (field->cpp_type() == FD::CPPTYPE_MESSAGE) {
    return error(absl::StrCat("'", path, "' is a message; set one of its fields (",
                              FieldNames(field->message_type()), ") as ", path,
                              ".<field>=value"));
  }

  if (!field->is_repeated()) {
    if (!SetOrAdd(message, field, value)) {
      return error(absl::StrCat(path, " takes ", ValueHint(field), ", got '", value, "'"));
    }
  } else {
    // The whole list is replaced; an empty value clears it.
    message->GetReflection()->ClearField(message, field);
    if (!value.empty()) {
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        item = absl::StripAsciiWhitespace(item);
        if (!SetOrAdd(message, field, item)) {
          return error(absl::StrCat(path, " takes a comma-separated list, each item ",
                                    ValueHint(field), "; got '", item, "'"));
        }
      }
    }
  }
  *config = std::move(updated);
  return absl::OkStatus();
}

}  // namespace sb
