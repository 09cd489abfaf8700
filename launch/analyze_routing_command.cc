// switchboard analyze-routing --ckpt DIR --data DIR --out DIR [--batches N]
//     [--top_tokens N] [--no_plots]
// Runs a checkpoint's model in evaluation mode (capacity_factor_eval, no
// jitter) over --batches micro-batches of the data and writes what its
// routers did (launch/routing_analysis.h): OUT/routing.json, and PNG plots
// drawn by launch/plot_routing.py with Debian's python3-matplotlib
// (expert_load.png, top_tokens.png, coselection.png, layer_agreement.png).
// --ckpt: a run directory (its checkpoints/latest), its checkpoints/
// directory, or one step_N directory. --data: a prepared dataset (its val/
// split, else train/), a shard directory or file, or a text file (byte
// level). Tokens are labelled with the tokenizer.model next to the shards.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/batch_source.h"
#include "data/tokenizer.h"
#include "launch/checkpoint.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "launch/model_factory.h"
#include "launch/routing_analysis.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

// A step directory from a run dir, checkpoints dir or step dir.
absl::StatusOr<std::string> ResolveStepDir(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(fs::path(path) / kTrainerStateFile, ec)) return path;
  if (fs::exists(fs::path(path) / "latest", ec)) return LatestCheckpoint(fs::path(path).parent_path().string());
  if (fs::is_directory(fs::path(path) / "checkpoints", ec)) return LatestCheckpoint(path);
  return absl::NotFoundError(absl::StrCat(
      "--ckpt ", path, ": not a checkpoint (no ", kTrainerStateFile,
      "), a checkpoints/ directory or a run directory with checkpoints/"));
}

// A prepared dataset root reads its val/ split (else train/); other paths as they are.
std::string ResolveDataPath(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_regular_file(p / "tokenizer.model", ec)) {
    if (fs::is_directory(p / "val", ec) && !fs::is_empty(p / "val", ec)) return (p / "val").string();
    if (fs::is_directory(p / "train", ec)) return (p / "train").string();
  }
  return path;
}

// Labels for token ids: the dataset's SentencePiece pieces, else bytes.
std::function<std::string(int32_t)> TokenLabels(const std::string& data_path) {
  const fs::path p(data_path);
  std::error_code ec;
  for (const fs::path& dir : {fs::is_directory(p, ec) ? p : p.parent_path(),
                              (fs::is_directory(p, ec) ? p : p.parent_path()).parent_path()}) {
    const fs::path model = dir / "tokenizer.model";
    if (!fs::is_regular_file(model, ec)) continue;
    std::string error;
    std::shared_ptr<Tokenizer> tok = Tokenizer::Load(model.string(), &error);
    if (tok) return [tok](int32_t id) { return tok->IdToPiece(id); };
  }
  return [](int32_t id) {
    if (id >= 32 && id < 127) return std::string(1, static_cast<char>(id));
    return absl::StrFormat("<0x%02X>", id);
  };
}

// tensor -> host vector of int32
std::vector<int32_t> Ints(const Tensor& t) {
  std::vector<int32_t> out;
  for (double v : t.ToDoubles()) out.push_back(static_cast<int32_t>(v));
  return out;
}

absl::Status Analyze(const Flags& flags) {
  auto step_dir = ResolveStepDir(flags.Get("ckpt"));
  if (!step_dir.ok()) return step_dir.status();
  auto state = ReadTrainerState(*step_dir);
  if (!state.ok()) return state.status();
  const TrainConfig& config = state->config();
  auto batches = flags.GetInt("batches", 8);
  auto top_tokens = flags.GetInt("top_tokens", 20);
  if (!batches.ok()) return batches.status();
  if (!top_tokens.ok()) return top_tokens.status();
  if (*batches < 1 || *top_tokens < 0) return absl::InvalidArgumentError("need --batches >= 1, --top_tokens >= 0");
  auto model = LoadModel(config, *step_dir, DType::kF32);
  if (!model.ok()) return model.status();
  if ((*model)->MoeLayers().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(*step_dir, ": the model has no MoE layer to analyse"));
  }
  const std::string data_path = ResolveDataPath(flags.Get("data"));
  auto data = OpenBatchSource(data_path, config.train().seed() + 1);
  if (!data.ok()) return absl::Status(data.status().code(), absl::StrCat("--data: ", data.status().message()));
  if ((*data)->vocab_size() > config.model().vocab_size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--data %s: its vocabulary (%d tokens) is larger than the model's (%d)", data_path,
        (*data)->vocab_size(), config.model().vocab_size()));
  }

  std::vector<int> blocks;
  for (MoeLayer* moe : (*model)->MoeLayers()) blocks.push_back(moe->layer_index());
  const auto& moe_config = config.moe();
  RoutingAnalysis analysis(blocks, moe_config.num_experts(), moe_config.top_k());
  Batch batch;
  double loss = 0;
  for (int64_t i = 0; i < *batches; ++i) {
    if (absl::Status s = (*data)->Read(i, config.train().micro_batch_size(), config.train().seq_len(), &batch);
        !s.ok()) {
      return s;
    }
    StepContext ctx;
    ctx.training = false;
    ctx.seed = config.train().seed();
    loss += (*model)->Forward(batch.inputs, batch.targets, ctx).loss / *batches;
    std::vector<std::vector<int32_t>> ids, slots;
    std::vector<double> entropy;
    for (MoeLayer* moe : (*model)->MoeLayers()) {
      ids.push_back(Ints(moe->router().routing().expert_ids));
      slots.push_back(Ints(moe->router().routing().slots));
      entropy.push_back(moe->stats().entropy);
    }
    analysis.Add(Ints(batch.inputs), ids, slots, entropy);
  }

  nlohmann::json summary = analysis.Summary(static_cast<int>(*top_tokens), TokenLabels(data_path));
  summary["checkpoint"] = *step_dir;
  summary["step"] = state->step();
  summary["data"] = data_path;
  summary["batches"] = *batches;
  summary["eval_loss"] = loss;
  summary["capacity_factor_eval"] = moe_config.capacity_factor_eval();
  const std::string out_dir = flags.Get("out");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  const std::string json_path = out_dir + "/routing.json";
  {
    std::ofstream out(json_path);
    out << summary.dump(1) << "\n";
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", json_path));
  }
  std::printf("analyze-routing: %s (step %lld), %lld tokens of %s, eval loss %.4f -> %s\n",
              step_dir->c_str(), static_cast<long long>(state->step()),
              static_cast<long long>(summary["tokens"].get<int64_t>()), data_path.c_str(), loss,
              json_path.c_str());
  for (const auto& layer : summary["layers"]) {
    std::printf("  block %2d | max/mean %.2f | load entropy %.3f of max | dropped %.2f%% | router entropy %.3f\n",
                layer["block"].get<int>(), layer["max_over_mean"].get<double>(),
                layer["load_entropy_ratio"].get<double>(), 100 * layer["dropped_fraction"].get<double>(),
                layer["router_entropy"].get<double>());
  }
  if (flags.Has("no_plots")) return absl::OkStatus();
  // The plotting script of the tree this binary was built from (or
  // SB_PLOT_ROUTING), run by Debian's python3 (where python3-matplotlib
  // installs) unless SB_PYTHON names another interpreter.
  const char* script_env = std::getenv("SB_PLOT_ROUTING");
  const char* python_env = std::getenv("SB_PYTHON");
  const std::string script = script_env ? script_env : SB_SOURCE_DIR "/launch/plot_routing.py";
  const std::string python = python_env ? python_env
                             : fs::exists("/usr/bin/python3", ec) ? "/usr/bin/python3" : "python3";
  const std::string cmd = absl::StrCat("'", python, "' '", script, "' '", json_path, "' '", out_dir, "'");
  if (std::system(cmd.c_str()) != 0) {
    return absl::InternalError(absl::StrCat(
        "plotting failed (", cmd, "): it needs python3 with matplotlib (Debian: apt-get install "
        "python3-matplotlib, done by launch/install_deps.sh); ", json_path,
        " is written; --no_plots skips the plots"));
  }
  return absl::OkStatus();
}

}  // namespace

int AnalyzeRoutingCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"ckpt", "run directory, its checkpoints/ or one step_N directory", false, false, true},
      {"data", "prepared dataset (val/ split used), shard directory or file, or text", false, false, true},
      {"out", "output directory (routing.json and PNG plots)", false, false, true},
      {"batches", "micro-batches of the checkpoint's train.micro_batch_size x seq_len (default 8)"},
      {"top_tokens", "most frequent tokens to report (default 20)"},
      {"no_plots", "write routing.json only", true},
      {"help", "print this help", true},
  };
  for (const std::string& a : args) {
    if (a == "--help") {
      std::printf("%s", FlagsUsage("analyze-routing", specs).c_str());
      return 0;
    }
  }
  auto flags = Flags::Parse(args, specs);
  if (!flags.ok()) {
    std::fprintf(stderr, "switchboard analyze-routing: %s\n\n%s",
                 std::string(flags.status().message()).c_str(), FlagsUsage("analyze-routing", specs).c_str());
    return 2;
  }
  if (absl::Status s = Analyze(*flags); !s.ok()) {
    std::fprintf(stderr, "switchboard analyze-routing: %s\n", std::string(s.message()).c_str());
    return s.code() == absl::StatusCode::kInternal ? 1 : 2;
  }
  return 0;
}

}  // namespace sb
