#include "launch/command_util.h"

#include <cstdio>

namespace sb {

std::optional<Flags> ParseCommandFlags(const std::string& command, const Args& args,
                                       const std::vector<FlagSpec>& specs, int* exit_code) {
  for (const std::string& a : args) {
    if (a == "--help") {
      std::printf("%s", FlagsUsage(command, specs).c_str());
      *exit_code = 0;
      return std::nullopt;
    }
  }
  absl::StatusOr<Flags> flags = Flags::Parse(args, specs);
  if (!flags.ok()) {
    std::fprintf(stderr, "switchboard %s: %s\n\n%s", command.c_str(),
                 std::string(flags.status().message()).c_str(), FlagsUsage(command, specs).c_str());
    *exit_code = 2;
    return std::nullopt;
  }
  return *std::move(flags);
}

int ReportError(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "switchboard %s: %s\n", command.c_str(), std::string(status.message()).c_str());
  switch (status.code()) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
      return 1;
    default:
      return 2;
  }
}

}  // namespace sb
