// The subcommands of the `switchboard` binary. Each takes the arguments after
// its name and returns the process exit code (0 ok, 1 runtime failure, 2 bad
// usage or input).
#pragma once

#include <string>
#include <vector>

namespace sb {

using Args = std::vector<std::string>;

int TrainCommand(const Args& args);        // launch/train_command.cc
int ForwardCommand(const Args& args);      // launch/forward_command.cc
int PrepareDataCommand(const Args& args);  // launch/prepare_data_command.cc
int AnalyzeRoutingCommand(const Args& args);  // launch/analyze_routing_command.cc

}  // namespace sb
