#include "launch/model_factory.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "launch/hf_convert.h"
#include "moe/io/hf_checkpoint.h"
#include "moe/io/model_weights.h"
#include "moe/io/safetensors.h"

namespace sb {

ModelOptions ModelOptionsFromConfig(const TrainConfig& config) {
  const auto& m = config.model();
  const auto& e = config.moe();
  ModelOptions o;
  o.vocab_size = m.vocab_size();
  o.d_model = m.d_model();
  o.num_layers = m.num_layers();
  o.num_heads = m.num_heads();
  o.num_kv_heads = m.num_kv_heads();
  o.ffn_dim = m.ffn_dim();
  o.expert_ffn_dim = m.expert_ffn_dim() > 0 ? m.expert_ffn_dim() : m.ffn_dim();
  o.rope_theta = m.rope_theta();
  o.norm_eps = m.norm_eps();
  o.max_seq_len = m.max_seq_len();
  o.tie_embeddings = m.tie_embeddings();
  o.init_std = m.init_std();
  o.router.num_experts = e.num_experts();
  o.router.top_k = e.top_k();
  o.router.normalize_top_k = e.normalize_top_k();
  o.router.jitter_eps = e.router_jitter_eps();
  o.router.capacity_factor_train = e.capacity_factor_train();
  o.router.capacity_factor_eval = e.capacity_factor_eval();
  o.router.min_capacity = e.min_capacity();
  o.router.aux_loss_coef = e.aux_loss_coef();
  o.router.z_loss_coef = e.z_loss_coef();
  o.router.routing = e.routing() == switchboard::MoeConfig::EXPERT_CHOICE
                         ? RoutingMode::kExpertChoice
                         : RoutingMode::kTokenChoice;
  o.router.noisy_gating = e.noisy_gating();
  o.router.balance_loss = e.balance_loss() == switchboard::MoeConfig::CV_IMPORTANCE_LOAD
                              ? BalanceLoss::kCvImportanceLoad
                              : BalanceLoss::kSwitch;
  o.router.random_second_expert = e.second_expert_policy() == switchboard::MoeConfig::RANDOM;
  o.router.batch_prioritized = e.batch_prioritized_routing();
  o.router.aux_free_bias_rate = e.aux_free_bias_update_rate();
  o.router.num_shared_experts = e.num_shared_experts();
  o.router.shared_expert_ffn_dim = e.shared_expert_ffn_dim();
  o.router.expert_dropout = e.expert_dropout();
  o.moe_layers = MoeLayerMask(config);
  o.lm_head_chunk_tokens = config.train().lm_head_chunk_tokens();
  o.activation_recompute = config.train().activation_recompute();
  return o;
}

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const TrainConfig& config,
                                                 const std::string& weights_path, DType dtype) {
  if (absl::Status s = ValidateConfig(config, /*world_size=*/1); !s.ok()) return s;
  // A Hugging Face directory (config.json) is read through HfCheckpoint:
  // transformers 5's fused Mixtral experts load too, and config.json must
  // agree with `config`.
  std::unique_ptr<WeightReader> weights;
  if (HfCheckpoint::IsHfDir(weights_path)) {
    auto hf = HfCheckpoint::Open(weights_path);
    if (!hf.ok()) return hf.status();
    const std::vector<std::string> diffs =
        ArchitectureDiffs(TrainConfigFromHf((*hf)->config()), weights_path + "/config.json", config,
                          "the config", /*hf_keys=*/true);
    if (!diffs.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("the config does not describe ", weights_path,
                                                     ": ", absl::StrJoin(diffs, "; ")));
    }
    weights = *std::move(hf);
  } else {
    auto set = SafetensorsSet::Open(weights_path);
    if (!set.ok()) return set.status();
    weights = *std::move(set);
  }
  auto model = std::make_unique<Model>(ModelOptionsFromConfig(config), nullptr, dtype, Device::kCpu);
  if (absl::Status s = LoadModelWeights(*model, *weights); !s.ok()) return s;
  return model;
}

absl::Status ReadTokenBatch(const std::string& path, const std::string& name, Tensor* inputs,
                            Tensor* targets) {
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  auto info = (*file)->Info(name);
  if (!info.ok()) return info.status();
  if (info->shape.size() != 2 || info->shape[1] < 2) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name,
                                                   "' must be [batch, seq_len + 1] token ids"));
  }
  const bool is64 = info->dtype == SafetensorsDType::kI64;
  if (!is64 && info->dtype != SafetensorsDType::kI32) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "' must be I32 or I64, not ",
                                                   SafetensorsDTypeName(info->dtype)));
  }
  Tensor raw = Tensor::Empty(info->shape, is64 ? DType::kI64 : DType::kI32);
  if (absl::Status s = (*file)->ReadInto(name, raw); !s.ok()) return s;
  const std::vector<double> ids = raw.ToDoubles();
  const int64_t B = info->shape[0], S = info->shape[1] - 1;
  *inputs = Tensor::Empty({B, S}, DType::kI32);
  *targets = Tensor::Empty({B, S}, DType::kI32);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t s = 0; s < S; ++s) {
      inputs->data<int32_t>()[b * S + s] = static_cast<int32_t>(ids[b * (S + 1) + s]);
      targets->data<int32_t>()[b * S + s] = static_cast<int32_t>(ids[b * (S + 1) + s + 1]);
    }
  }
  return absl::OkStatus();
}

double TrainFlopsPerToken(const ModelOptions& o, int seq_len) {
  const double d = static_cast<double>(o.d_model);
  const double hd = d / o.num_heads;
  const double attn = d * hd * (2.0 * o.num_heads + 2.0 * o.num_kv_heads);
  // Expert choice runs E * C = capacity_factor_train * k * T expert rows on
  // T tokens: capacity_factor_train * k experts per token on average.
  const double experts_per_token =
      o.router.expert_choice() ? o.router.top_k * o.router.capacity_factor_train : o.router.top_k;
  const double shared_width =
      o.router.num_shared_experts * static_cast<double>(o.router.shared_expert_ffn_dim > 0
                                                            ? o.router.shared_expert_ffn_dim
                                                            : o.expert_ffn_dim);
  const double router_matrices = o.router.noisy_gating ? 2.0 : 1.0;  // + W_noise
  double active = 0.0;
  for (bool is_moe : o.moe_layers) {
    active += attn;
    active += is_moe ? experts_per_token * 3.0 * d * o.expert_ffn_dim +
                           3.0 * d * shared_width + router_matrices * d * o.router.num_experts
                     : 3.0 * d * o.ffn_dim;
  }
  active += d * o.vocab_size;  // LM head (the embedding lookup is free)
  return 6.0 * active + 12.0 * o.num_layers * d * seq_len;
}

double ActiveParametersPerToken(const ModelOptions& o) {
  const double d = static_cast<double>(o.d_model);
  const double hd = d / o.num_heads;
  const double attn = d * hd * (2.0 * o.num_heads + 2.0 * o.num_kv_heads);
  double n = d * static_cast<double>(o.vocab_size) * (o.tie_embeddings ? 1 : 2) + d;  // + final norm
  for (bool is_moe : o.moe_layers) {
    n += attn + 2 * d;  // attention and the block's two norms
    n += is_moe ? o.router.top_k * 3.0 * d * static_cast<double>(o.expert_ffn_dim) +
                      d * o.router.num_experts
                : 3.0 * d * static_cast<double>(o.ffn_dim);
  }
  return n;
}

}  // namespace sb
