#include "launch/model_factory.h"

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
  o.moe_layers = MoeLayerMask(config);
  return o;
}

double TrainFlopsPerToken(const ModelOptions& o, int seq_len) {
  const double d = static_cast<double>(o.d_model);
  const double hd = d / o.num_heads;
  const double attn = d * hd * (2.0 * o.num_heads + 2.0 * o.num_kv_heads);
  double active = 0.0;
  for (bool is_moe : o.moe_layers) {
    active += attn;
    active += is_moe ? o.router.top_k * 3.0 * d * o.expert_ffn_dim + d * o.router.num_experts
                     : 3.0 * d * o.ffn_dim;
  }
  active += d * o.vocab_size;  // LM head (the embedding lookup is free)
  return 6.0 * active + 12.0 * o.num_layers * d * seq_len;
}

}  // namespace sb
