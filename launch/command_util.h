// Boilerplate shared by the single-process subcommands (upcycle,
// export-hf, generate, eval): flag parsing with --help, and exit codes from
// a Status (2: bad usage or input, 1: failure while running; docs/cli.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "launch/commands.h"
#include "launch/flags.h"

namespace sb {

// The parsed flags, or nullopt with *exit_code set (0 after --help, 2 after
// a usage error, printed with the usage text).
std::optional<Flags> ParseCommandFlags(const std::string& command, const Args& args,
                                       const std::vector<FlagSpec>& specs, int* exit_code);

// Prints "switchboard <command>: <message>" and returns the exit code:
// 1 for failures of the machine (I/O, resources, internal), else 2.
int ReportError(const std::string& command, const absl::Status& status);

}  // namespace sb
