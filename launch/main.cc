// switchboard: one binary, one subcommand per job (docs/cli.md).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "launch/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const sb::Args&);
  const char* help;
};

const Command kCommands[] = {
    {"train", sb::TrainCommand, "train a model from a config (--config F [--set k=v] [--run_dir D])"},
    {"prepare-data", sb::PrepareDataCommand,
     "tokenize a corpus into token shards (--input P... --out D (--tokenizer M | --vocab_size N))"},
    {"forward", sb::ForwardCommand, "one forward pass of HF-named weights; writes logits, losses, router stats"},
    {"analyze-routing", sb::AnalyzeRoutingCommand,
     "expert load, token->expert, co-selection, layer agreement of a checkpoint (--ckpt D --data D --out D)"},
};

void PrintUsage() {
  std::fprintf(stderr, "Usage: switchboard <command> [flags]\n\nCommands:\n");
  for (const Command& c : kCommands) std::fprintf(stderr, "  %-14s %s\n", c.name, c.help);
  std::fprintf(stderr, "\n'switchboard <command> --help' lists a command's flags.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "help")) {
    PrintUsage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  for (const Command& c : kCommands) {
    if (name == c.name) return c.run(sb::Args(argv + 2, argv + argc));
  }
  std::fprintf(stderr, "switchboard: unknown command '%s'\n\n", name.c_str());
  PrintUsage();
  return 2;
}
