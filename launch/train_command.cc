// switchboard train --config F [--set a.b=v]... [--run_dir D] [--resume]
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "launch/trainer.h"

namespace sb {

int TrainCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"config", "TrainConfig text file (configs/*.textproto)", false, false, true},
      {"set", "override a field: --set moe.top_k=2 (repeatable)", false, true, false},
      {"run_dir", "output directory (default runs/<config name>)", false, false, false},
      {"resume", "continue from run_dir/checkpoints/latest (any data x expert layout)", true, false,
       false},
      {"help", "print this help", true, false, false},
  };
  for (const std::string& a : args) {
    if (a == "--help") {
      std::printf("%s", FlagsUsage("train", specs).c_str());
      return 0;
    }
  }
  auto flags = Flags::Parse(args, specs);
  if (!flags.ok()) {
    std::fprintf(stderr, "switchboard train: %s\n\n%s", std::string(flags.status().message()).c_str(),
                 FlagsUsage("train", specs).c_str());
    return 2;
  }
  const std::string config_path = flags->Get("config");
  auto config = LoadConfigFile(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "switchboard train: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  for (const std::string& assignment : flags->All("set")) {
    if (absl::Status s = ApplyOverride(assignment, &*config); !s.ok()) {
      std::fprintf(stderr, "switchboard train: --set %s: %s\n", assignment.c_str(),
                   std::string(s.message()).c_str());
      return 2;
    }
  }
  const std::string run_dir = flags->Get(
      "run_dir", absl::StrCat("runs/", std::filesystem::path(config_path).stem().string()));
  const bool resume = flags->Has("resume");
  // Checked before Create, which makes the run directory.
  if (resume && !HasCheckpoint(run_dir)) {
    std::fprintf(stderr, "switchboard train: --resume: %s\n",
                 std::string(LatestCheckpoint(run_dir).status().message()).c_str());
    return 2;
  }
  if (!resume && HasCheckpoint(run_dir)) {
    std::fprintf(stderr,
                 "switchboard train: %s/latest exists: pass --resume to continue that run, or "
                 "choose another --run_dir\n",
                 CheckpointsDir(run_dir).c_str());
    return 2;
  }
  auto trainer = Trainer::Create(*config, run_dir);
  if (!trainer.ok()) {
    std::fprintf(stderr, "switchboard train: %s\n", std::string(trainer.status().message()).c_str());
    return 2;
  }
  if (resume) {
    if (absl::Status s = (*trainer)->Resume(); !s.ok()) {
      std::fprintf(stderr, "switchboard train: --resume: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  std::printf("run_dir: %s\n", run_dir.c_str());
  if (absl::Status s = (*trainer)->Run(); !s.ok()) {
    std::fprintf(stderr, "switchboard train: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace sb
