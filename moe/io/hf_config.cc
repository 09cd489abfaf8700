// config.json of Llama / Mixtral: strict parsing and the export writer.
// Defaults for absent optional keys are transformers' LlamaConfig /
// MixtralConfig defaults (what transformers itself would assume).
#include "moe/io/hf_config.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "moe/io/file_util.h"
#include "moe/io/json_strict.h"

namespace sb {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxConfigBytes = 16 << 20;

// Collects every problem of one config, each naming its key and value.
class ConfigReader {
 public:
  explicit ConfigReader(const json& root) : root_(root) {}

  bool Has(const char* key) const {
    auto it = root_.find(key);
    return it != root_.end() && !it->is_null();
  }
  const json* Get(const char* key) const {
    auto it = root_.find(key);
    return it == root_.end() || it->is_null() ? nullptr : &*it;
  }
  // A positive integer; required ones must be present.
  int64_t Int(const char* key, int64_t fallback, bool required) {
    const json* v = Get(key);
    if (v == nullptr) {
      if (required) Add(absl::StrCat(key, " is missing"));
      return fallback;
    }
    if (!v->is_number_integer() || v->get<int64_t>() < 1) {
      Add(absl::StrCat(key, " = ", v->dump(), " must be a positive integer"));
      return fallback;
    }
    return v->get<int64_t>();
  }
  double Real(const json* v, const std::string& key, double fallback) {
    if (v == nullptr) return fallback;
    if (!v->is_number() || !std::isfinite(v->get<double>()) || v->get<double>() <= 0) {
      Add(absl::StrCat(key, " = ", v->dump(), " must be a positive number"));
      return fallback;
    }
    return v->get<double>();
  }
  double Real(const char* key, double fallback) { return Real(Get(key), key, fallback); }
  bool Bool(const char* key, bool fallback) {
    const json* v = Get(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      Add(absl::StrCat(key, " = ", v->dump(), " must be true or false"));
      return fallback;
    }
    return v->get<bool>();
  }
  // Token ids: an integer, a list (first entry), or null/absent (-1).
  int64_t TokenId(const char* key) {
    const json* v = Get(key);
    if (v != nullptr && v->is_array() && !v->empty()) v = &(*v)[0];
    if (v == nullptr || !v->is_number_integer()) return -1;
    return v->get<int64_t>();
  }
  // A key we do not implement unless it has the neutral value.
  void RequireFalse(const char* key, const char* what) {
    const json* v = Get(key);
    if (v != nullptr && !(v->is_boolean() && !v->get<bool>()))
      Add(absl::StrCat(key, " = ", v->dump(), ": ", what, " are not supported"));
  }
  void Add(std::string problem) { problems_.push_back(std::move(problem)); }
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  const json& root_;
  std::vector<std::string> problems_;
};

// RoPE: transformers 4.x writes rope_theta (+ rope_scaling), 5.x writes
// rope_parameters {rope_type, rope_theta}. Only the unscaled ("default") kind
// is what our RoPE computes.
double ReadRope(ConfigReader& r, double fallback) {
  double theta = r.Real("rope_theta", fallback);
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const json* p = r.Get(key);
    if (p == nullptr) continue;
    if (!p->is_object()) {
      r.Add(absl::StrCat(key, " = ", p->dump(), " must be an object or null"));
      continue;
    }
    for (const char* type_key : {"rope_type", "type"}) {
      auto t = p->find(type_key);
      if (t != p->end() && !(t->is_string() && t->get<std::string>() == "default")) {
        r.Add(absl::StrCat(key, ".", type_key, " = ", t->dump(),
                           ": only unscaled RoPE (\"default\") is supported"));
      }
    }
    auto partial = p->find("partial_rotary_factor");
    if (partial != p->end() && !(partial->is_number() && partial->get<double>() == 1.0)) {
      r.Add(absl::StrCat(key, ".partial_rotary_factor = ", partial->dump(),
                         ": only full rotary embeddings are supported"));
    }
    auto t = p->find("rope_theta");
    if (t != p->end()) theta = r.Real(&*t, absl::StrCat(key, ".rope_theta"), theta);
  }
  return theta;
}

}  // namespace

const char* HfArchName(HfArch arch) { return arch == HfArch::kMixtral ? "mixtral" : "llama"; }

absl::StatusOr<HfConfig> ParseHfConfig(absl::string_view label, absl::string_view json_text) {
  absl::StatusOr<json> root = ParseJsonStrict(label, json_text);
  if (!root.ok()) return root.status();
  if (!root->is_object()) return absl::InvalidArgumentError(absl::StrCat(label, ": not a JSON object"));
  ConfigReader r(*root);
  HfConfig c;
  const json* type = r.Get("model_type");
  if (type == nullptr || !type->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": model_type is missing (want \"llama\" or \"mixtral\")"));
  }
  const std::string model_type = type->get<std::string>();
  if (model_type == "mixtral") {
    c.arch = HfArch::kMixtral;
  } else if (model_type != "llama") {
    return absl::InvalidArgumentError(absl::StrCat(
        label, ": model_type = \"", model_type, "\" is not supported (llama or mixtral)"));
  }
  const bool moe = c.is_moe();
  c.vocab_size = r.Int("vocab_size", 0, true);
  c.hidden_size = r.Int("hidden_size", 0, true);
  c.intermediate_size = r.Int("intermediate_size", 0, true);
  c.num_hidden_layers = static_cast<int>(r.Int("num_hidden_layers", 0, true));
  c.num_attention_heads = static_cast<int>(r.Int("num_attention_heads", 0, true));
  c.num_key_value_heads =
      static_cast<int>(r.Int("num_key_value_heads", c.num_attention_heads, false));
  c.rope_theta = ReadRope(r, moe ? 1e6 : 10000.0);
  c.rms_norm_eps = r.Real("rms_norm_eps", moe ? 1e-5 : 1e-6);
  c.max_position_embeddings = r.Int("max_position_embeddings", moe ? 4096 * 32 : 2048, false);
  c.tie_word_embeddings = r.Bool("tie_word_embeddings", false);
  c.bos_token_id = r.TokenId("bos_token_id");
  c.eos_token_id = r.TokenId("eos_token_id");
  for (const char* key : {"dtype", "torch_dtype"}) {
    const json* v = r.Get(key);
    if (v != nullptr && v->is_string() && c.dtype.empty()) c.dtype = v->get<std::string>();
  }
  if (moe) {
    c.num_local_experts = static_cast<int>(r.Int("num_local_experts", 8, false));
    c.num_experts_per_tok = static_cast<int>(r.Int("num_experts_per_tok", 2, false));
    const json* coef = r.Get("router_aux_loss_coef");
    c.router_aux_loss_coef = 0.001;
    if (coef != nullptr) {
      if (!coef->is_number() || !(coef->get<double>() >= 0)) {
        r.Add(absl::StrCat("router_aux_loss_coef = ", coef->dump(), " must be a number >= 0"));
      } else {
        c.router_aux_loss_coef = coef->get<double>();
      }
    }
    if (c.num_experts_per_tok > c.num_local_experts && c.num_local_experts > 0) {
      r.Add(absl::StrCat("num_experts_per_tok = ", c.num_experts_per_tok,
                         " exceeds num_local_experts = ", c.num_local_experts));
    }
  }

  // What would change the computation and we do not implement.
  if (const json* act = r.Get("hidden_act"); act != nullptr && *act != "silu") {
    r.Add(absl::StrCat("hidden_act = ", act->dump(), ": only \"silu\" (SwiGLU) is supported"));
  }
  r.RequireFalse("attention_bias", "attention biases");
  r.RequireFalse("mlp_bias", "MLP biases");
  if (r.Has("quantization_config")) r.Add("quantization_config is set: quantized checkpoints are not supported");
  if (const json* w = r.Get("sliding_window"); w != nullptr) {
    if (!w->is_number_integer() || w->get<int64_t>() < c.max_position_embeddings) {
      r.Add(absl::StrCat("sliding_window = ", w->dump(),
                         ": sliding-window attention is not supported (null, or >= "
                         "max_position_embeddings = ", c.max_position_embeddings, ")"));
    }
  }
  if (c.num_attention_heads > 0 && c.hidden_size > 0) {
    if (c.hidden_size % c.num_attention_heads != 0) {
      r.Add(absl::StrCat("hidden_size = ", c.hidden_size, " is not divisible by num_attention_heads = ",
                         c.num_attention_heads));
    } else if (const json* hd = r.Get("head_dim");
               hd != nullptr && !(hd->is_number_integer() &&
                                  hd->get<int64_t>() == c.hidden_size / c.num_attention_heads)) {
      r.Add(absl::StrCat("head_dim = ", hd->dump(), " differs from hidden_size / num_attention_heads = ",
                         c.hidden_size / c.num_attention_heads, ": not supported"));
    }
  }
  if (c.num_key_value_heads > 0 && c.num_attention_heads % c.num_key_value_heads != 0) {
    r.Add(absl::StrCat("num_attention_heads = ", c.num_attention_heads,
                       " is not divisible by num_key_value_heads = ", c.num_key_value_heads));
  }
  if (!r.problems().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": ", absl::StrJoin(r.problems(), "; ")));
  }
  return c;
}

absl::StatusOr<HfConfig> ReadHfConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, kMaxConfigBytes);
  if (!text.ok()) return text.status();
  return ParseHfConfig(path, *text);
}

std::string HfConfigJson(const HfConfig& c) {
  const bool moe = c.is_moe();
  json j = {
      {"architectures", {moe ? "MixtralForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", HfArchName(c.arch)},
      {"attention_dropout", 0.0},
      {"hidden_act", "silu"},
      {"hidden_size", c.hidden_size},
      {"head_dim", c.hidden_size / c.num_attention_heads},
      {"initializer_range", 0.02},
      {"intermediate_size", c.intermediate_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"num_attention_heads", c.num_attention_heads},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_key_value_heads", c.num_key_value_heads},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_scaling", nullptr},
      {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"torch_dtype", c.dtype.empty() ? "float32" : c.dtype},
      {"use_cache", true},
      {"vocab_size", c.vocab_size},
  };
  j["bos_token_id"] = c.bos_token_id >= 0 ? json(c.bos_token_id) : json(nullptr);
  j["eos_token_id"] = c.eos_token_id >= 0 ? json(c.eos_token_id) : json(nullptr);
  if (moe) {
    j["num_local_experts"] = c.num_local_experts;
    j["num_experts_per_tok"] = c.num_experts_per_tok;
    j["router_aux_loss_coef"] = c.router_aux_loss_coef;
    j["router_jitter_noise"] = 0.0;
    j["output_router_logits"] = false;
    j["sliding_window"] = nullptr;
  } else {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  }
  return j.dump(2) + "\n";
}

}  // namespace sb
