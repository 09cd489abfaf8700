#include "launch/hf_convert.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sb {
namespace {

int NumMoeBlocks(const std::vector<bool>& mask) {
  return static_cast<int>(std::count(mask.begin(), mask.end(), true));
}

int64_t ExpertWidth(const TrainConfig& c) {
  return c.model().expert_ffn_dim() > 0 ? c.model().expert_ffn_dim() : c.model().ffn_dim();
}

std::string MaskText(const std::vector<bool>& mask) {
  std::vector<int> blocks;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) blocks.push_back(static_cast<int>(i));
  return absl::StrCat("[", absl::StrJoin(blocks, ","), "]");
}

}  // namespace

TrainConfig TrainConfigFromHf(const HfConfig& hf) {
  TrainConfig c;
  auto* m = c.mutable_model();
  m->set_vocab_size(hf.vocab_size);
  m->set_d_model(hf.hidden_size);
  m->set_num_layers(hf.num_hidden_layers);
  m->set_num_heads(hf.num_attention_heads);
  m->set_num_kv_heads(hf.num_key_value_heads);
  m->set_rope_theta(hf.rope_theta);
  m->set_norm_eps(hf.rms_norm_eps);
  m->set_max_seq_len(hf.max_position_embeddings);
  m->set_tie_embeddings(hf.tie_word_embeddings);
  // The default evaluation window must fit the model.
  c.mutable_train()->set_seq_len(static_cast<int32_t>(
      std::min<int64_t>(c.train().seq_len(), hf.max_position_embeddings)));
  auto* moe = c.mutable_moe();
  if (!hf.is_moe()) {
    m->set_ffn_dim(hf.intermediate_size);
    moe->set_moe_layer_interval(0);  // dense
    return c;
  }
  m->set_ffn_dim(hf.intermediate_size);
  m->set_expert_ffn_dim(hf.intermediate_size);
  moe->set_moe_layer_interval(1);
  moe->set_num_experts(hf.num_local_experts);
  moe->set_top_k(hf.num_experts_per_tok);
  moe->set_normalize_top_k(true);
  moe->set_capacity_factor_train(0);
  moe->set_capacity_factor_eval(0);
  moe->set_router_jitter_eps(0);
  moe->set_z_loss_coef(0);
  moe->set_aux_loss_coef(hf.router_aux_loss_coef * hf.num_experts_per_tok /
                         std::max(1, hf.num_hidden_layers));
  return c;
}

absl::StatusOr<HfConfig> HfConfigFromTrainConfig(const TrainConfig& config, const std::string& dtype) {
  const auto& m = config.model();
  const auto& moe = config.moe();
  const std::vector<bool> mask = MoeLayerMask(config);
  const int moe_blocks = NumMoeBlocks(mask);
  HfConfig hf;
  hf.vocab_size = m.vocab_size();
  hf.hidden_size = m.d_model();
  hf.num_hidden_layers = m.num_layers();
  hf.num_attention_heads = m.num_heads();
  hf.num_key_value_heads = m.num_kv_heads();
  hf.rope_theta = m.rope_theta();
  hf.rms_norm_eps = m.norm_eps();
  hf.max_position_embeddings = m.max_seq_len();
  hf.tie_word_embeddings = m.tie_embeddings();
  hf.dtype = dtype;
  if (moe_blocks == 0) {
    hf.arch = HfArch::kLlama;
    hf.intermediate_size = m.ffn_dim();
    return hf;
  }
  std::vector<std::string> problems;
  if (moe_blocks != m.num_layers()) {
    problems.push_back(absl::StrCat(
        "MoE blocks ", MaskText(mask), " of ", m.num_layers(),
        ": Mixtral has an MoE feed-forward in every block, so interleaved dense and MoE "
        "blocks cannot be represented"));
  }
  if (!moe.normalize_top_k()) {
    problems.push_back(
        "moe.normalize_top_k = false (Switch-style raw gates): Mixtral renormalises the "
        "top-k gates to sum to 1, so the exported model would compute something else");
  }
  if (moe.capacity_factor_eval() > 0) {
    problems.push_back(absl::StrCat(
        "moe.capacity_factor_eval = ", moe.capacity_factor_eval(),
        " drops tokens over capacity at inference, which transformers never does; export the "
        "dropless model with --set moe.capacity_factor_eval=0 (compare its loss first: "
        "switchboard eval ... --set moe.capacity_factor_eval=0)"));
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("Hugging Face Mixtral cannot represent this model: ",
                                                   absl::StrJoin(problems, "; ")));
  }
  hf.arch = HfArch::kMixtral;
  hf.intermediate_size = ExpertWidth(config);
  hf.num_local_experts = moe.num_experts();
  hf.num_experts_per_tok = moe.top_k();
  hf.router_aux_loss_coef = moe.aux_loss_coef() * moe_blocks / moe.top_k();
  return hf;
}

std::vector<std::string> ArchitectureDiffs(const TrainConfig& a, const std::string& a_label,
                                           const TrainConfig& b, const std::string& b_label,
                                           bool hf_keys) {
  std::vector<std::string> diffs;
  auto compare = [&](const std::string& field, const char* hf_key, const std::string& va,
                     const std::string& vb) {
    if (va == vb) return;
    diffs.push_back(absl::StrCat(field, hf_keys && hf_key ? absl::StrCat(" [", hf_key, "]") : "",
                                 " = ", va, " in ", a_label, ", ", vb, " in ", b_label));
  };
  const auto& ma = a.model();
  const auto& mb = b.model();
  compare("model.vocab_size", "vocab_size", absl::StrCat(ma.vocab_size()), absl::StrCat(mb.vocab_size()));
  compare("model.d_model", "hidden_size", absl::StrCat(ma.d_model()), absl::StrCat(mb.d_model()));
  compare("model.num_layers", "num_hidden_layers", absl::StrCat(ma.num_layers()),
          absl::StrCat(mb.num_layers()));
  compare("model.num_heads", "num_attention_heads", absl::StrCat(ma.num_heads()),
          absl::StrCat(mb.num_heads()));
  compare("model.num_kv_heads", "num_key_value_heads", absl::StrCat(ma.num_kv_heads()),
          absl::StrCat(mb.num_kv_heads()));
  compare("model.rope_theta", "rope_theta", absl::StrCat(ma.rope_theta()), absl::StrCat(mb.rope_theta()));
  compare("model.norm_eps", "rms_norm_eps", absl::StrCat(ma.norm_eps()), absl::StrCat(mb.norm_eps()));
  compare("model.tie_embeddings", "tie_word_embeddings", ma.tie_embeddings() ? "true" : "false",
          mb.tie_embeddings() ? "true" : "false");
  const std::vector<bool> mask_a = MoeLayerMask(a), mask_b = MoeLayerMask(b);
  const bool dense_a = NumMoeBlocks(mask_a) < static_cast<int>(mask_a.size());
  const bool dense_b = NumMoeBlocks(mask_b) < static_cast<int>(mask_b.size());
  if (dense_a && dense_b) {
    compare("model.ffn_dim (dense blocks)", "intermediate_size", absl::StrCat(ma.ffn_dim()),
            absl::StrCat(mb.ffn_dim()));
  }
  if (NumMoeBlocks(mask_a) > 0 && NumMoeBlocks(mask_b) > 0) {
    compare("model.expert_ffn_dim (0 = ffn_dim)", "intermediate_size", absl::StrCat(ExpertWidth(a)),
            absl::StrCat(ExpertWidth(b)));
    compare("moe.num_experts", "num_local_experts", absl::StrCat(a.moe().num_experts()),
            absl::StrCat(b.moe().num_experts()));
  }
  if (mask_a.size() == mask_b.size()) {
    compare("MoE blocks (moe.moe_layers / moe.moe_layer_interval)", nullptr, MaskText(mask_a),
            MaskText(mask_b));
  }
  return diffs;
}

}  // namespace sb
