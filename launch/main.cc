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
    {"upcycle", sb::UpcycleCommand,
     "dense HF Llama -> MoE weights (--from DIR --config F --out D [--expert_from DIR]...)"},
    {"export-hf", sb::ExportHfCommand, "a checkpoint as a Hugging Face Mixtral / Llama directory (--ckpt C --out D)"},
    {"generate", sb::GenerateCommand, "generate text with a KV cache (--ckpt C --prompt TEXT)"},
    {"eval", sb::EvalCommand, "validation loss, perplexity, routing statistics (--ckpt C --data D)"},
    {"analyze-routing", sb::AnalyzeRoutingCommand,
     "expert load, token->expert, co-selection, layer agreement of a checkpoint (--ckpt D --data D --out D)"},
};

// To stdout when asked for (--help), to stderr after a usage error.
void PrintUsage(std::FILE* out) {
  std::fprintf(out, "Usage: switchboard <command> [flags]\n\nCommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-16s %s\n", c.name, c.help);
  std::fprintf(out, "\n'switchboard <command> --help' lists a command's flags.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "help")) {
    PrintUsage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  for (const Command& c : kCommands) {
    if (name == c.name) return c.run(sb::Args(argv + 2, argv + argc));
  }
  std::fprintf(stderr, "switchboard: unknown command '%s'\n\n", name.c_str());
  PrintUsage(stderr);
  return 2;
}
