// Reading and writing TrainConfig text format: LoadConfigFile and
// ParseConfigText (errors as "file:line:col: message", unknown fields
// rejected) and ResolvedConfigText (every default made explicit, so a run
// directory records exactly what ran even if a default changes later).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "configs/config.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace sb {
namespace {

namespace pb = google::protobuf;

// Collects the parser's errors as "origin:line:col: message" (1-based).
class OriginErrorCollector : public pb::io::ErrorCollector {
 public:
  explicit OriginErrorCollector(const std::string& origin) : origin_(origin) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    errors_.push_back(absl::StrCat(origin_, ":", line + 1, ":", column + 1, ": ", message));
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string origin_;
  std::vector<std::string> errors_;
};

// Sets every unset singular scalar field of `message` and its sub-messages to
// its declared default. Repeated fields stay as they are (their default is
// the empty list, which text format cannot spell anyway).
void FillDefaults(pb::Message* message) {
  const pb::Descriptor* descriptor = message->GetDescriptor();
  const pb::Reflection* reflection = message->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const pb::FieldDescriptor* field = descriptor->field(i);
    if (field->is_repeated()) continue;
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      FillDefaults(reflection->MutableMessage(message, field));
      continue;
    }
    if (reflection->HasField(*message, field)) continue;
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        reflection->SetInt32(message, field, field->default_value_int32());
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        reflection->SetInt64(message, field, field->default_value_int64());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        reflection->SetUInt32(message, field, field->default_value_uint32());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        reflection->SetUInt64(message, field, field->default_value_uint64());
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        reflection->SetDouble(message, field, field->default_value_double());
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        reflection->SetFloat(message, field, field->default_value_float());
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        reflection->SetBool(message, field, field->default_value_bool());
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        reflection->SetEnum(message, field, field->default_value_enum());
        break;
      case pb::FieldDescriptor::CPPTYPE_STRING:
        reflection->SetString(message, field, field->default_value_string());
        break;
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        break;  // handled above
    }
  }
}

}  // namespace

absl::Status ParseTextMessage(const std::string& text, const std::string& origin,
                              pb::Message* message) {
  OriginErrorCollector errors(origin);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  // Parse (not Merge): a singular field given twice is an error, not "last wins".
  if (!parser.ParseFromString(text, message)) {
    if (errors.errors().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": not a valid ", message->GetDescriptor()->name()));
    }
    return absl::InvalidArgumentError(absl::StrJoin(errors.errors(), "\n"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainConfig> ParseConfigText(const std::string& text, const std::string& origin) {
  TrainConfig config;
  if (absl::Status s = ParseTextMessage(text, origin, &config); !s.ok()) return s;
  return config;
}

absl::StatusOr<TrainConfig> LoadConfigFile(const std::string& path) {
  // stdio rather than ifstream: reading a directory must fail (EISDIR), not
  // parse as an empty config.
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open config file ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) {
    // A bound: /dev/zero or a wrong path to a large file must not exhaust memory.
    if (text.size() + n > kMaxConfigFileBytes) {
      std::fclose(file);
      return absl::InvalidArgumentError(absl::StrCat("config file ", path, " is larger than ",
                                                     kMaxConfigFileBytes,
                                                     " bytes: not a TrainConfig text file"));
    }
    text.append(buffer, n);
  }
  const bool failed = std::ferror(file) != 0;
  const int read_errno = errno;
  std::fclose(file);
  if (failed) {
    return absl::DataLossError(
        absl::StrCat("cannot read config file ", path, ": ", std::strerror(read_errno)));
  }
  return ParseConfigText(text, path);
}

TrainConfig ResolvedConfig(const TrainConfig& config) {
  TrainConfig resolved = config;
  FillDefaults(&resolved);
  return resolved;
}

std::string ResolvedConfigText(const TrainConfig& config) {
  const TrainConfig resolved = ResolvedConfig(config);
  std::string text;
  pb::TextFormat::Printer printer;
  printer.PrintToString(resolved, &text);
  return absl::StrCat(
      "# Resolved TrainConfig (configs/switchboard.proto): every field explicit,\n"
      "# defaults included. Load it again with --config.\n",
      text);
}

}  // namespace sb
