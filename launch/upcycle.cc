#include "launch/upcycle.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "data/staged_dir.h"
#include "launch/hf_convert.h"
#include "launch/model_factory.h"
#include "launch/model_source.h"
#include "launch/router_prompts.h"
#include "moe/core/rng.h"
#include "moe/io/composed_weights.h"
#include "moe/io/hf_checkpoint.h"
#include "moe/io/model_weights.h"
#include "moe/io/sharded_weights.h"
#include "moe/ops/ops.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

// What one of our tensor names is, for the upcycling map.
struct NameParts {
  int layer = -1;      // model.layers.<layer>. ..., else -1
  int expert = -1;     // ...experts.<expert>.<proj>.weight
  std::string proj;    // w1 / w3 / w2
  bool router = false;  // ...block_sparse_moe.gate.weight
  // Routing-variant state a dense model has no counterpart for, started at
  // zero as the papers start it: the noisy-gating noise projection
  // (gate_noise.weight; Shazeer et al. 2017 initialise W_noise to zeros) and
  // the auxiliary-loss-free selection bias (gate.e_score_correction_bias;
  // DeepSeek-V3 starts it at 0).
  bool zero_init = false;
};

NameParts Parse(const std::string& name) {
  NameParts p;
  const std::vector<std::string> parts = absl::StrSplit(name, '.');
  if (parts.size() < 4 || parts[0] != "model" || parts[1] != "layers" ||
      !absl::SimpleAtoi(parts[2], &p.layer)) {
    p.layer = -1;
    return p;
  }
  if (parts[3] != "block_sparse_moe") return p;
  if (parts.size() == 6 && parts[4] == "gate" && parts[5] == "weight") p.router = true;
  if (parts.size() == 6 && (parts[4] == "gate_noise" || parts[5] == "e_score_correction_bias")) {
    p.zero_init = true;
  }
  if (parts.size() == 8 && parts[4] == "experts" && absl::SimpleAtoi(parts[5], &p.expert)) {
    p.proj = parts[6];
  }
  return p;
}

// The dense FFN tensor an expert projection copies.
std::string DenseName(int layer, const std::string& proj) {
  const char* dense = proj == "w1" ? "gate_proj" : proj == "w3" ? "up_proj" : "down_proj";
  return absl::StrCat("model.layers.", layer, ".mlp.", dense, ".weight");
}

absl::StatusOr<std::unique_ptr<HfCheckpoint>> OpenDense(const std::string& dir, const std::string& role) {
  auto ckpt = HfCheckpoint::Open(dir);
  if (!ckpt.ok()) {
    return absl::Status(ckpt.status().code(), absl::StrCat(role, ": ", ckpt.status().message()));
  }
  if ((*ckpt)->config().is_moe()) {
    return absl::InvalidArgumentError(absl::StrCat(
        role, ": ", dir, " is already a mixture of experts (model_type mixtral); upcycling "
        "starts from a dense Llama (model_type llama)"));
  }
  return ckpt;
}

// The base's architecture laid over the target's block layout, so that
// ArchitectureDiffs compares the FFN widths with the experts' and with
// the dense blocks'.
TrainConfig AsTarget(const HfConfig& dense, const TrainConfig& target) {
  TrainConfig c = TrainConfigFromHf(dense);
  *c.mutable_moe() = target.moe();
  c.mutable_model()->set_expert_ffn_dim(dense.intermediate_size);
  return c;
}

// N(0, std^2) keyed by (seed, name), or zeros: the router init of the config.
Tensor InitRouter(const TrainConfig& config, const std::string& name, int64_t E, int64_t D) {
  Tensor t = Tensor::Zeros({E, D}, DType::kF64);
  if (config.upcycle().router_init() == switchboard::UpcycleConfig::ZEROS) return t;
  const uint64_t key = StreamKey({config.train().seed(), HashName(name)});
  double* w = t.data<double>();
  for (int64_t i = 0; i < E * D; ++i) w[i] = config.upcycle().router_init_std() * NormalAt(key, i);
  return t;
}

// w += N(0, (noise * rms(w))^2) on every expert slice, keyed per slice.
void AddExpertNoise(Model& model, double noise, uint64_t seed) {
  for (const auto& [name, view] : NamedModelWeights(model)) {
    if (Parse(name).expert < 0) continue;
    std::vector<double> w = view.ToDoubles();
    double ss = 0;
    for (double x : w) ss += x * x;
    const double std = noise * std::sqrt(ss / static_cast<double>(w.size()));
    const uint64_t key = StreamKey({seed, HashName(name), 0x6e6f697365ULL});
    for (size_t i = 0; i < w.size(); ++i) w[i] += std * NormalAt(key, i);
    ops::Convert(Tensor::FromVector(w, view.shape()), view);
  }
}

}  // namespace

absl::StatusOr<UpcycleResult> Upcycle(const TrainConfig& config, const std::string& config_label,
                                      const UpcycleOptions& options, DType dtype) {
  if (absl::Status s = ValidateConfig(config, 1); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_label, ": ", s.message()));
  }
  if (config.moe().num_shared_experts() > 0) {
    // The dense FFN has one function to give: as a shared expert beside
    // routed copies the block would compute it twice (a different model).
    return absl::InvalidArgumentError(absl::StrCat(
        config_label, ": moe.num_shared_experts = ", config.moe().num_shared_experts(),
        ": upcycling into shared experts is not supported (the dense FFN would be counted twice); "
        "upcycle with moe.num_shared_experts = 0"));
  }
  const std::vector<bool> mask = MoeLayerMask(config);
  if (std::find(mask.begin(), mask.end(), true) == mask.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_label, " describes a dense model (no MoE block): upcycling needs MoE blocks "
        "(moe.moe_layer_interval or moe.moe_layers)"));
  }
  auto base = OpenDense(options.from, "--from");
  if (!base.ok()) return base.status();
  const HfConfig& hf = (*base)->config();
  const std::string base_label = absl::StrCat(options.from, "/config.json");
  std::vector<std::string> diffs =
      ArchitectureDiffs(AsTarget(hf, config), base_label, config, config_label, /*hf_keys=*/true);
  if (!diffs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the dense model and the MoE config disagree: ",
                                                   absl::StrJoin(diffs, "; ")));
  }
  const int E = config.moe().num_experts();
  std::vector<std::unique_ptr<HfCheckpoint>> donors;
  if (!options.expert_from.empty()) {
    if (static_cast<int>(options.expert_from.size()) != E) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--expert_from given ", options.expert_from.size(), " times, moe.num_experts = ", E,
          ": give one donor per expert (in expert order), or none to copy --from"));
    }
    for (int e = 0; e < E; ++e) {
      const std::string role = absl::StrCat("--expert_from (expert ", e, ")");
      auto donor = OpenDense(options.expert_from[e], role);
      if (!donor.ok()) return donor.status();
      // Donors must share the base's architecture (its tie of the head does not matter).
      TrainConfig d = TrainConfigFromHf((*donor)->config());
      d.mutable_model()->set_tie_embeddings(hf.tie_word_embeddings);
      diffs = ArchitectureDiffs(d, absl::StrCat(options.expert_from[e], "/config.json"),
                                TrainConfigFromHf(hf), base_label, /*hf_keys=*/true);
      if (!diffs.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            role, " does not match the base model: ", absl::StrJoin(diffs, "; ")));
      }
      donors.push_back(*std::move(donor));
    }
  }

  UpcycleResult result;
  result.tokenizer_path = (*base)->tokenizer_path();
  const ModelOptions model_options = ModelOptionsFromConfig(config);
  result.model = std::make_unique<Model>(model_options, nullptr, dtype, Device::kCpu);
  Model& model = *result.model;
  const int64_t D = config.model().d_model();

  // Routers first: the hidden-state init needs the dense base model.
  std::map<std::string, Tensor> routers;
  std::vector<Tensor> hidden_rows;
  if (!options.router_prompts.empty()) {
    auto prompts = ReadRouterPrompts(options.router_prompts, E);
    if (!prompts.ok()) return prompts.status();
    const std::string tokenizer = options.tokenizer.empty() ? result.tokenizer_path : options.tokenizer;
    if (tokenizer.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--router_prompts needs a tokenizer: ", options.from, " has no tokenizer.model (pass --tokenizer)"));
    }
    TrainConfig dense_config = ResolvedConfig(TrainConfigFromHf(hf));
    auto dense = std::make_unique<Model>(ModelOptionsFromConfig(dense_config), nullptr, DType::kF64,
                                         Device::kCpu);
    if (absl::Status s = LoadModelWeights(*dense, **base); !s.ok()) return s;
    auto rows = RouterRowsFromPrompts(*dense, *prompts, tokenizer);
    if (!rows.ok()) return rows.status();
    hidden_rows = *std::move(rows);
    result.report.push_back(absl::StrCat("routers: hidden states of ", options.router_prompts,
                                         " (last token, L2-normalised; base model)"));
  } else {
    result.report.push_back(
        config.upcycle().router_init() == switchboard::UpcycleConfig::ZEROS
            ? std::string("routers: zeros")
            : absl::StrCat("routers: N(0, ", config.upcycle().router_init_std(), "^2)"));
  }

  ComposedWeights composed(options.from);
  for (const auto& [name, view] : NamedModelWeights(model)) {
    const NameParts p = Parse(name);
    if (p.router) {
      routers[name] = hidden_rows.empty() ? InitRouter(config, name, E, D) : hidden_rows[p.layer];
      composed.AddTensor(name, routers[name]);
    } else if (p.zero_init) {
      composed.AddTensor(name, Tensor::Zeros(view.shape(), DType::kF64));
    } else if (p.expert >= 0) {
      const HfCheckpoint* source = donors.empty() ? base->get() : donors[p.expert].get();
      composed.AddFrom(name, source, DenseName(p.layer, p.proj));
    } else {
      composed.AddFrom(name, base->get(), name);
    }
  }
  if (absl::Status s = LoadModelWeights(model, composed); !s.ok()) return s;
  if (config.upcycle().expert_noise() > 0) {
    AddExpertNoise(model, config.upcycle().expert_noise(), config.train().seed());
  }
  int moe_blocks = 0;
  for (bool m : mask) moe_blocks += m;
  result.report.insert(
      result.report.begin(),
      absl::StrCat("upcycled ", options.from, " (", hf.num_hidden_layers, " layers, d_model ",
                   hf.hidden_size, ", FFN ", hf.intermediate_size, ") into ", moe_blocks,
                   " MoE blocks of ", E, " experts, top-", config.moe().top_k(),
                   config.moe().normalize_top_k() ? " renormalised" : " raw gates"));
  if (donors.empty()) {
    result.report.push_back(absl::StrCat("experts: copies of the dense FFN of ", options.from));
  } else {
    for (int e = 0; e < E; ++e)
      result.report.push_back(absl::StrCat("expert ", e, ": FFN of ", options.expert_from[e]));
  }
  if (config.moe().noisy_gating()) result.report.push_back("noisy gating: noise projections zero");
  if (config.moe().aux_free_bias_update_rate() > 0) {
    result.report.push_back("auxiliary-loss-free selection bias: zero");
  }
  if (config.upcycle().expert_noise() > 0) {
    result.report.push_back(absl::StrCat("expert noise: ", config.upcycle().expert_noise(),
                                         " x RMS of each weight"));
  }
  return result;
}

absl::Status WriteWeightsDir(const std::string& out, Model& model, const TrainConfig& config,
                             const std::string& tokenizer_path,
                             const std::map<std::string, std::string>& metadata,
                             int64_t max_shard_bytes, bool overwrite) {
  auto staged = StagedDir::Create(out, overwrite);
  if (!staged.ok()) return staged.status();
  const fs::path dir(staged->path());
  {
    std::ofstream f(dir / kWeightsConfigFile);
    f << "# Written by switchboard: the config of the weights beside it.\n"
      << ResolvedConfigText(config);
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", (dir / kWeightsConfigFile).string()));
  }
  auto files = WriteShardedSafetensors(dir.string(), NamedModelWeights(model), std::nullopt,
                                       max_shard_bytes, metadata);
  if (!files.ok()) return files.status();
  if (!tokenizer_path.empty()) {
    std::error_code ec;
    fs::copy_file(tokenizer_path, dir / "tokenizer.model", ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot copy ", tokenizer_path, ": ", ec.message()));
  }
  return staged->Commit();
}

}  // namespace sb
