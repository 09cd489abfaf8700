// Command-line flags of one subcommand: "--name value", "--name=value",
// repeatable flags (--set a=1 --set b=2) and booleans ("--resume").
// Unknown flags and missing values are errors that name the flag.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sb {

struct FlagSpec {
  std::string name;         // without "--"
  std::string help;
  bool is_bool = false;     // present = true, takes no value
  bool repeated = false;    // may appear several times
  bool required = false;
};

class Flags {
 public:
  // Parses args (everything after the subcommand name).
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs);
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  // Last value of a flag, or `fallback` when absent.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  const std::vector<std::string>& All(const std::string& name) const;
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

// "Usage: switchboard <command> ..." with one line per flag.
std::string FlagsUsage(const std::string& command, const std::vector<FlagSpec>& specs);

}  // namespace sb
