// switchboard forward [--config F] --weights W --tokens T --out O [--set k=v]...
// Runs one forward pass (evaluation mode: no jitter, capacity_factor_eval)
// of a model with Hugging Face-named weights and writes logits, losses and
// per-layer router statistics: the hook for parity checks and for users
// checking a conversion. Output tensors (safetensors):
//   logits [T, V] f32; loss, aux_loss, z_loss, total_loss [1] f64;
//   per MoE block N: router_logits.layer_N [T, E] f32, aux.layer_N, z.layer_N,
//   entropy.layer_N, dropped_frac.layer_N [1] f64, routed.layer_N and
//   kept.layer_N [E] i32 (choices per expert before / after dropping).
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "launch/hf_convert.h"
#include "launch/model_factory.h"
#include "moe/io/hf_checkpoint.h"
#include "moe/io/safetensors.h"
#include "moe/ops/ops.h"

namespace sb {
namespace {

Tensor Scalar(double v) { return Tensor::FromVector<double>({v}, {1}); }

Tensor AsF32(const Tensor& t) {
  Tensor out = Tensor::Empty(t.shape(), DType::kF32);
  ops::Convert(t, out);
  return out;
}

Tensor Counts(const std::vector<int64_t>& counts) {
  std::vector<int32_t> v(counts.begin(), counts.end());
  return Tensor::FromVector(v, {static_cast<int64_t>(v.size())});
}

absl::Status RunForward(const Flags& flags) {
  // Without --config the model is the one config.json describes (HF directories).
  absl::StatusOr<TrainConfig> config;
  if (flags.Has("config")) {
    config = LoadConfigFile(flags.Get("config"));
  } else if (HfCheckpoint::IsHfDir(flags.Get("weights"))) {
    auto hf = ReadHfConfig(flags.Get("weights") + "/config.json");
    if (!hf.ok()) return hf.status();
    config = ResolvedConfig(TrainConfigFromHf(*hf));
  } else {
    return absl::InvalidArgumentError(
        "--config is required unless --weights is a Hugging Face directory (config.json)");
  }
  if (!config.ok()) return config.status();
  for (const std::string& assignment : flags.All("set")) {
    if (absl::Status s = ApplyOverride(assignment, &*config); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", assignment, ": ", s.message()));
    }
  }
  const std::string dtype_name = flags.Get("dtype", "f32");
  if (dtype_name != "f32" && dtype_name != "f64") {
    return absl::InvalidArgumentError(absl::StrCat("--dtype must be f32 or f64, not '", dtype_name, "'"));
  }
  auto model = LoadModel(*config, flags.Get("weights"), dtype_name == "f64" ? DType::kF64 : DType::kF32);
  if (!model.ok()) return model.status();
  Tensor inputs, targets;
  const std::string tokens_path = flags.Get("tokens");
  if (absl::Status s = ReadTokenBatch(tokens_path, flags.Get("tokens_name", "tokens"), &inputs, &targets);
      !s.ok()) {
    return s;
  }
  const int64_t vocab = config->model().vocab_size();
  for (double id : inputs.ToDoubles()) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(tokens_path, ": token id ", id,
                                                     " outside model.vocab_size ", vocab));
    }
  }
  if (inputs.dim(1) > config->model().max_seq_len()) {
    return absl::InvalidArgumentError(absl::StrCat(tokens_path, ": sequence length ", inputs.dim(1),
                                                   " exceeds model.max_seq_len ",
                                                   config->model().max_seq_len()));
  }
  StepContext ctx;
  ctx.training = false;
  const ForwardResult r = (*model)->Forward(inputs, targets, ctx);

  std::vector<std::pair<std::string, Tensor>> out = {
      {"logits", AsF32((*model)->logits())}, {"loss", Scalar(r.loss)},
      {"aux_loss", Scalar(r.aux_loss)},       {"z_loss", Scalar(r.z_loss)},
      {"total_loss", Scalar(r.total_loss)}};
  for (MoeLayer* moe : (*model)->MoeLayers()) {
    const std::string n = absl::StrCat(".layer_", moe->layer_index());
    const RouterStats& s = moe->stats();
    out.push_back({"router_logits" + n, AsF32(moe->router().logits())});
    out.push_back({"aux" + n, Scalar(s.aux_loss)});
    out.push_back({"z" + n, Scalar(s.z_loss)});
    out.push_back({"entropy" + n, Scalar(s.entropy)});
    out.push_back({"dropped_frac" + n, Scalar(s.dropped_fraction)});
    out.push_back({"routed" + n, Counts(s.routed)});
    out.push_back({"kept" + n, Counts(s.kept)});
  }
  if (absl::Status s = WriteSafetensors(flags.Get("out"), out); !s.ok()) return s;
  std::printf("loss %.6f | aux %.6f | z %.6f | %lld tokens -> %s\n", r.loss, r.aux_loss, r.z_loss,
              static_cast<long long>(r.tokens), flags.Get("out").c_str());
  return absl::OkStatus();
}

}  // namespace

int ForwardCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"config", "TrainConfig text file describing the model (optional for an HF directory)", false,
       false, false},
      {"weights", "Hugging Face-named .safetensors file, directory or index.json, or a Hugging Face "
                  "model directory (config.json; fused Mixtral experts too)", false, false, true},
      {"tokens", "safetensors file with token ids [batch, seq_len + 1] (I32 or I64)", false, false, true},
      {"tokens_name", "tensor name inside --tokens (default: tokens)", false, false, false},
      {"out", "output .safetensors file", false, false, true},
      {"set", "override a config field (repeatable)", false, true, false},
      {"dtype", "f32 (default) or f64", false, false, false},
      {"help", "print this help", true, false, false},
  };
  for (const std::string& a : args) {
    if (a == "--help") {
      std::printf("%s", FlagsUsage("forward", specs).c_str());
      return 0;
    }
  }
  auto flags = Flags::Parse(args, specs);
  if (!flags.ok()) {
    std::fprintf(stderr, "switchboard forward: %s\n\n%s", std::string(flags.status().message()).c_str(),
                 FlagsUsage("forward", specs).c_str());
    return 2;
  }
  if (absl::Status s = RunForward(*flags); !s.ok()) {
    std::fprintf(stderr, "switchboard forward: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  return 0;
}

}  // namespace sb
