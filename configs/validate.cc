// ValidateConfig: every field rule and cross-field rule of a TrainConfig, in
// one place. All violations are collected (so one run shows every mistake),
// one line each: non-finite numbers first, then the rules in schema order,
// each naming its field(s) and value(s), e.g.
// "moe.top_k = 9 exceeds moe.num_experts = 8". A rule whose inputs already
// broke their own rule is skipped, so one mistake gives one line.
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "configs/config.h"
#include "moe/core/device_memory.h"

namespace sb {
namespace {

namespace pb = google::protobuf;

class Violations {
 public:
  template <typename... Parts>
  void Add(const Parts&... parts) { lines_.push_back(absl::StrCat(parts...)); }

  // Integer bounds: name = value must be >= lo.
  bool AtLeast(const char* name, int64_t value, int64_t lo) {
    if (value >= lo) return true;
    Add(name, " = ", value, " must be >= ", lo);
    return false;
  }
  bool AtMost(const char* name, int64_t value, int64_t hi) {
    if (value <= hi) return true;
    Add(name, " = ", value, " exceeds the supported maximum ", hi);
    return false;
  }
  // Real bounds; non-finite values were reported by CheckFinite and pass here.
  bool Positive(const char* name, double value) {
    if (!std::isfinite(value) || value > 0) return true;
    Add(name, " = ", value, " must be > 0");
    return false;
  }
  bool NonNegative(const char* name, double value) {
    if (!std::isfinite(value) || value >= 0) return true;
    Add(name, " = ", value, " must be >= 0");
    return false;
  }
  // value in [lo, hi) or, with hi_inclusive, [lo, hi].
  bool InRange(const char* name, double value, double lo, double hi, bool hi_inclusive) {
    if (!std::isfinite(value)) return true;
    if (value >= lo && (hi_inclusive ? value <= hi : value < hi)) return true;
    Add(name, " = ", value, " must be in [", lo, ", ", hi, hi_inclusive ? "]" : ")");
    return false;
  }

  absl::Status ToStatus() const {
    if (lines_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(lines_, "\n"));
  }

 private:
  std::vector<std::string> lines_;
};

// Every double field (set or defaulted) must be finite: text format and
// --set both accept "inf" and "nan", and NaN slips through every comparison.
void CheckFinite(const pb::Message& message, const std::string& prefix, Violations* out) {
  const pb::Descriptor* descriptor = message.GetDescriptor();
  const pb::Reflection* reflection = message.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const pb::FieldDescriptor* field = descriptor->field(i);
    const std::string path = prefix.empty() ? field->name() : prefix + "." + field->name();
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !field->is_repeated()) {
      CheckFinite(reflection->GetMessage(message, field), path, out);
    } else if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE && !field->is_repeated()) {
      const double value = reflection->GetDouble(message, field);
      if (!std::isfinite(value)) out->Add(path, " = ", value, " must be finite");
    }
  }
}

void CheckModel(const TrainConfig& config, Violations* v) {
  const auto& m = config.model();
  v->AtLeast("model.vocab_size", m.vocab_size(), 1);
  const bool d_ok = v->AtLeast("model.d_model", m.d_model(), 1);
  v->AtLeast("model.num_layers", m.num_layers(), 1);
  const bool heads_ok = v->AtLeast("model.num_heads", m.num_heads(), 1);
  const bool kv_ok = v->AtLeast("model.num_kv_heads", m.num_kv_heads(), 1);

  // ffn_dim is used by dense blocks, and by experts when expert_ffn_dim = 0.
  // (Only for a plausible depth: the bound below reports absurd ones.)
  const std::vector<bool> mask =
      m.num_layers() <= 4096 ? MoeLayerMask(config) : std::vector<bool>();
  int first_dense = -1;
  bool any_moe = false;
  for (int i = 0; i < static_cast<int>(mask.size()); ++i) {
    if (!mask[i] && first_dense < 0) first_dense = i;
    any_moe = any_moe || mask[i];
  }
  if (m.ffn_dim() < 1 && first_dense >= 0) {
    v->Add("model.ffn_dim = ", m.ffn_dim(), " must be >= 1 (block ", first_dense, " is dense)");
  } else if (m.ffn_dim() < 1 && any_moe && m.expert_ffn_dim() == 0) {
    v->Add("model.ffn_dim = ", m.ffn_dim(),
           " must be >= 1 (experts use it while model.expert_ffn_dim = 0)");
  } else {
    v->AtLeast("model.ffn_dim", m.ffn_dim(), 0);
  }
  v->AtLeast("model.expert_ffn_dim", m.expert_ffn_dim(), 0);
  v->Positive("model.rope_theta", m.rope_theta());
  v->Positive("model.norm_eps", m.norm_eps());
  v->AtLeast("model.max_seq_len", m.max_seq_len(), 1);
  v->NonNegative("model.init_std", m.init_std());

  if (d_ok && heads_ok) {
    if (m.d_model() % m.num_heads() != 0) {
      v->Add("model.d_model = ", m.d_model(), " is not divisible by model.num_heads = ",
             m.num_heads());
    } else if ((m.d_model() / m.num_heads()) % 2 != 0) {
      v->Add("model.d_model / model.num_heads = ", m.d_model() / m.num_heads(),
             " (the head dim) must be even: RoPE rotates pairs of dims");
    }
  }
  if (heads_ok && kv_ok && m.num_heads() % m.num_kv_heads() != 0) {
    v->Add("model.num_heads = ", m.num_heads(), " is not divisible by model.num_kv_heads = ",
           m.num_kv_heads());
  }
  // Upper bounds far above any real model: past them a typo would only
  // surface later as an allocation failure or an index overflow.
  v->AtMost("model.vocab_size", m.vocab_size(), int64_t{1} << 24);
  v->AtMost("model.d_model", m.d_model(), int64_t{1} << 20);
  v->AtMost("model.num_layers", m.num_layers(), 4096);
  v->AtMost("model.num_heads", m.num_heads(), 4096);
  v->AtMost("model.ffn_dim", m.ffn_dim(), int64_t{1} << 22);
  v->AtMost("model.expert_ffn_dim", m.expert_ffn_dim(), int64_t{1} << 22);
  v->AtMost("model.max_seq_len", m.max_seq_len(), int64_t{1} << 24);
}

void CheckMoe(const TrainConfig& config, Violations* v) {
  const auto& moe = config.moe();
  const int num_layers = config.model().num_layers();
  if (v->AtLeast("moe.num_experts", moe.num_experts(), 1) && moe.top_k() > moe.num_experts()) {
    v->Add("moe.top_k = ", moe.top_k(), " exceeds moe.num_experts = ", moe.num_experts());
  }
  v->AtLeast("moe.top_k", moe.top_k(), 1);
  v->AtMost("moe.num_experts", moe.num_experts(), 1 << 16);
  v->AtLeast("moe.min_capacity", moe.min_capacity(), 0);
  v->InRange("moe.router_jitter_eps", moe.router_jitter_eps(), 0, 1, /*hi_inclusive=*/false);
  v->NonNegative("moe.aux_loss_coef", moe.aux_loss_coef());
  v->NonNegative("moe.z_loss_coef", moe.z_loss_coef());
  const bool interval_ok = v->AtLeast("moe.moe_layer_interval", moe.moe_layer_interval(), 0);
  std::set<int> seen;
  for (int i = 0; i < moe.moe_layers_size(); ++i) {
    const int layer = moe.moe_layers(i);
    if (num_layers >= 1 && (layer < 0 || layer >= num_layers)) {
      v->Add("moe.moe_layers[", i, "] = ", layer, " is outside [0, model.num_layers = ",
             num_layers, ")");
    } else if (!seen.insert(layer).second) {
      v->Add("moe.moe_layers[", i, "] = ", layer, " repeats an earlier entry");
    }
  }
  // An interval longer than the model silently makes it dense: say so.
  if (moe.moe_layers_size() == 0 && interval_ok && num_layers >= 1 &&
      moe.moe_layer_interval() > num_layers) {
    v->Add("moe.moe_layer_interval = ", moe.moe_layer_interval(),
           " selects no block of model.num_layers = ", num_layers,
           " (set it to 0 for a dense model)");
  }
}

// The routing variants: their own ranges, then the combinations that have
// no meaning (each names the papers' assumption it breaks).
void CheckRoutingVariants(const TrainConfig& config, Violations* v) {
  using M = switchboard::MoeConfig;
  const auto& moe = config.moe();
  v->AtLeast("moe.num_shared_experts", moe.num_shared_experts(), 0);
  v->AtMost("moe.num_shared_experts", moe.num_shared_experts(), 1024);
  v->AtLeast("moe.shared_expert_ffn_dim", moe.shared_expert_ffn_dim(), 0);
  v->AtMost("moe.shared_expert_ffn_dim", moe.shared_expert_ffn_dim(), int64_t{1} << 22);
  v->NonNegative("moe.aux_free_bias_update_rate", moe.aux_free_bias_update_rate());
  v->InRange("moe.expert_dropout", moe.expert_dropout(), 0, 1, /*hi_inclusive=*/false);
  if (moe.balance_loss() == M::CV_IMPORTANCE_LOAD) {
    if (!moe.noisy_gating()) {
      v->Add("moe.balance_loss = CV_IMPORTANCE_LOAD needs moe.noisy_gating = true (its load "
             "estimator is the probability under the gating noise)");
    }
    if (moe.num_experts() >= 1 && moe.top_k() >= moe.num_experts()) {
      v->Add("moe.balance_loss = CV_IMPORTANCE_LOAD needs moe.top_k = ", moe.top_k(),
             " < moe.num_experts = ", moe.num_experts(), " (its threshold is the (k+1)-th logit)");
    }
  }
  if (moe.second_expert_policy() == M::RANDOM && moe.top_k() != 2) {
    v->Add("moe.second_expert_policy = RANDOM needs moe.top_k = 2, not ", moe.top_k());
  }
  if (moe.routing() != M::EXPERT_CHOICE) return;
  const char* ec = "moe.routing = EXPERT_CHOICE";
  if (moe.capacity_factor_train() <= 0 || moe.capacity_factor_eval() <= 0) {
    v->Add(ec, " needs moe.capacity_factor_train and moe.capacity_factor_eval > 0 (each expert "
               "takes C tokens), got ", moe.capacity_factor_train(), " and ",
           moe.capacity_factor_eval());
  }
  if (moe.normalize_top_k()) v->Add(ec, " needs moe.normalize_top_k = false (a token has no fixed k)");
  if (moe.second_expert_policy() != M::ALL) v->Add(ec, " needs moe.second_expert_policy = ALL");
  if (moe.batch_prioritized_routing()) {
    v->Add(ec, " with moe.batch_prioritized_routing: experts already take tokens by probability");
  }
  if (moe.aux_free_bias_update_rate() > 0) {
    v->Add(ec, " with moe.aux_free_bias_update_rate > 0: expert choice is balanced by construction");
  }
  if (moe.balance_loss() != M::SWITCH) v->Add(ec, " needs moe.balance_loss = SWITCH (it has none)");
}

void CheckParallel(const TrainConfig& config, int world_size, Violations* v) {
  const int ep = config.parallel().expert_parallel_size();
  const bool world_ok = world_size >= 1;
  if (!world_ok) v->Add("world size = ", world_size, " must be >= 1");
  v->Positive("parallel.grad_bucket_mb", config.parallel().grad_bucket_mb());
  v->NonNegative("parallel.collective_timeout_s", config.parallel().collective_timeout_s());
  if (!v->AtLeast("parallel.expert_parallel_size", ep, 1)) return;
  const int experts = config.moe().num_experts();
  if (experts >= 1 && experts % ep != 0) {
    v->Add("moe.num_experts = ", experts, " is not divisible by parallel.expert_parallel_size = ",
           ep);
  }
  if (world_ok && world_size % ep != 0) {
    v->Add("world size ", world_size, " is not divisible by parallel.expert_parallel_size = ", ep);
  }
  const auto& p = config.parallel();
  const bool cuda = config.train().device() == switchboard::TrainLoopConfig::CUDA;
  if (p.backend() == switchboard::ParallelConfig::NCCL && !cuda) {
    v->Add("parallel.backend = NCCL moves device buffers: it needs train.device = CUDA "
           "(use AUTO or MPI on the CPU)");
  }
  // (NCCL with train.device = CUDA in a build without CUDA: train.device's own error.)
  if (p.backend() == switchboard::ParallelConfig::MPI && cuda) {
    v->Add("parallel.backend = MPI moves host buffers only: train.device = CUDA needs NCCL "
           "(or AUTO)");
  }
  if (v->AtLeast("parallel.ranks_per_node", p.ranks_per_node(), 0) && p.ranks_per_node() > 0 &&
      p.all_to_all() == switchboard::ParallelConfig::HIERARCHICAL &&
      ep % p.ranks_per_node() != 0 && p.ranks_per_node() % ep != 0) {
    v->Add("parallel.all_to_all = HIERARCHICAL needs expert-parallel groups of whole nodes: "
           "parallel.expert_parallel_size = ", ep, " and parallel.ranks_per_node = ",
           p.ranks_per_node(), " must divide one another");
  }
}

void CheckOptimizer(const TrainConfig& config, Violations* v) {
  const auto& o = config.optimizer();
  v->Positive("optimizer.lr", o.lr());
  v->NonNegative("optimizer.weight_decay", o.weight_decay());
  v->InRange("optimizer.beta1", o.beta1(), 0, 1, /*hi_inclusive=*/false);
  v->InRange("optimizer.beta2", o.beta2(), 0, 1, /*hi_inclusive=*/false);
  v->Positive("optimizer.eps", o.eps());
  // Adafactor's fields are checked whichever optimizer runs: a bad value is
  // a mistake even while unused, and the defaults pass.
  if (std::isfinite(o.adafactor_decay_rate()) &&
      !(o.adafactor_decay_rate() > 0 && o.adafactor_decay_rate() <= 1)) {
    v->Add("optimizer.adafactor_decay_rate = ", o.adafactor_decay_rate(),
           " must be in (0, 1] (second-moment decay 1 - step^-rate)");
  }
  v->Positive("optimizer.adafactor_clip_threshold", o.adafactor_clip_threshold());
  v->Positive("optimizer.adafactor_eps1", o.adafactor_eps1());
  v->Positive("optimizer.adafactor_eps2", o.adafactor_eps2());
  v->InRange("optimizer.adafactor_beta1", o.adafactor_beta1(), 0, 1, /*hi_inclusive=*/false);
}

void CheckSchedule(const TrainConfig& config, Violations* v) {
  const auto& s = config.schedule();
  v->AtLeast("schedule.warmup_steps", s.warmup_steps(), 0);
  v->InRange("schedule.min_lr_ratio", s.min_lr_ratio(), 0, 1, /*hi_inclusive=*/true);
  v->AtLeast("schedule.decay_steps", s.decay_steps(), 0);
}

void CheckTrain(const TrainConfig& config, int world_size, Violations* v) {
  const auto& t = config.train();
  v->AtLeast("train.steps", t.steps(), 1);
  v->AtLeast("train.micro_batch_size", t.micro_batch_size(), 1);
  if (v->AtLeast("train.seq_len", t.seq_len(), 1) && config.model().max_seq_len() >= 1 &&
      t.seq_len() > config.model().max_seq_len()) {
    v->Add("train.seq_len = ", t.seq_len(), " exceeds model.max_seq_len = ",
           config.model().max_seq_len());
  }
  // Token rows are indexed with int32 (routing permutations): T * top_k < 2^31
  // (expert choice lists every expert per token: T * num_experts).
  const bool expert_choice = config.moe().routing() == switchboard::MoeConfig::EXPERT_CHOICE;
  const int64_t rows = int64_t{t.micro_batch_size()} * t.seq_len() *
                       std::max(1, expert_choice ? config.moe().num_experts() : config.moe().top_k());
  if (t.micro_batch_size() >= 1 && t.seq_len() >= 1 && rows >= (int64_t{1} << 31)) {
    v->Add("train.micro_batch_size * train.seq_len * ",
           expert_choice ? "moe.num_experts" : "moe.top_k", " = ", rows,
           " token choices per micro-batch exceed 2^31");
  }
  v->AtLeast("train.grad_accum_steps", t.grad_accum_steps(), 1);
  v->AtLeast("train.log_every", t.log_every(), 1);
  v->AtLeast("train.eval_every", t.eval_every(), 0);
  v->AtLeast("train.eval_batches", t.eval_batches(), 1);
  const bool cuda = t.device() == switchboard::TrainLoopConfig::CUDA;
  if (cuda && !CudaBuilt()) {
    v->Add("train.device = CUDA but this binary was built without CUDA (SB_CUDA=OFF); "
           "use train.device=CPU or rebuild where nvcc is found");
  }
  if (!cuda && t.precision() == switchboard::TrainLoopConfig::BF16) {
    v->Add("train.precision = BF16 needs train.device = CUDA (the CPU path computes in f32)");
  }
  v->AtLeast("train.lm_head_chunk_tokens", t.lm_head_chunk_tokens(), 0);
}

void CheckCheckpoint(const TrainConfig& config, Violations* v) {
  v->AtLeast("checkpoint.every_steps", config.checkpoint().every_steps(), 0);
  v->AtLeast("checkpoint.keep_last", config.checkpoint().keep_last(), 0);
  v->AtLeast("checkpoint.max_nonfinite_steps", config.checkpoint().max_nonfinite_steps(), 1);
}

void CheckUpcycle(const TrainConfig& config, Violations* v) {
  v->NonNegative("upcycle.router_init_std", config.upcycle().router_init_std());
  v->NonNegative("upcycle.expert_noise", config.upcycle().expert_noise());
}

void CheckLogging(const TrainConfig& config, Violations* v) {
  v->NonNegative("logging.peak_tflops", config.logging().peak_tflops());
}

}  // namespace

absl::Status ValidateConfig(const TrainConfig& config, int world_size) {
  Violations violations;
  CheckFinite(config, "", &violations);
  CheckModel(config, &violations);
  CheckMoe(config, &violations);
  CheckRoutingVariants(config, &violations);
  CheckParallel(config, world_size, &violations);
  CheckOptimizer(config, &violations);
  CheckSchedule(config, &violations);
  CheckTrain(config, world_size, &violations);
  CheckCheckpoint(config, &violations);
  CheckUpcycle(config, &violations);
  CheckLogging(config, &violations);
  return violations.ToStatus();
}

}  // namespace sb
