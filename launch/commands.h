// The subcommands of the `switchboard` binary. Each takes the arguments after
// its name and returns the process exit code (0 ok, 1 runtime failure, 2 bad
// usage or input).
#pragma once

#include <string>
#include <vector>

namespace sb {

using Args = std::vector<std::string>;

// Exit codes (docs/cli.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;    // a failure while running (a failed save, divergence)
inline constexpr int kExitUsage = 2;      // bad usage or input: flags, config, data, files, run_dir
inline constexpr int kExitPreempted = 3;  // stopped by a signal after saving a checkpoint

int TrainCommand(const Args& args);        // launch/train_command.cc
int ForwardCommand(const Args& args);      // launch/forward_command.cc
int PrepareDataCommand(const Args& args);  // launch/prepare_data_command.cc
int UpcycleCommand(const Args& args);      // launch/upcycle_command.cc
int ExportHfCommand(const Args& args);     // launch/export_hf_command.cc
int GenerateCommand(const Args& args);     // launch/generate_command.cc
int EvalCommand(const Args& args);         // launch/eval_command.cc
int AnalyzeRoutingCommand(const Args& args);  // launch/analyze_routing_command.cc

}  // namespace sb
