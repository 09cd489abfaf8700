// Opening a Hugging Face directory: config.json, the safetensors set, and
// the map from our tensor names to file tensors (or parts of fused ones),
// every shape and dtype checked against the config first.
#include "moe/io/hf_checkpoint.h"

#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

constexpr size_t kShown = 8;  // problems listed per kind; the count says how many

std::string Layer(int i) { return absl::StrCat("model.layers.", i, "."); }

// Collects the problems of one directory and the file tensors used.
class Mapper {
 public:
  Mapper(const SafetensorsSet& files, const HfConfig& config) : files_(files), config_(config) {}

  bool Has(const std::string& name) const { return files_.Contains(name); }

  // Checks file tensor `file` against `shape`; `why` explains the shape.
  bool Check(const std::string& file, const Shape& shape, const std::string& why) {
    absl::StatusOr<SafetensorsTensorInfo> info = files_.Info(file);
    if (!info.ok()) {
      missing_.push_back(file);
      return false;
    }
    used_.insert(file);
    if (info->shape != shape) {
      mismatched_.push_back(absl::StrCat(file, " is ", ShapeToString(info->shape),
                                         ", config.json implies ", ShapeToString(shape), " (",
                                         why, ")"));
      return false;
    }
    if (!IsFloat(info->dtype)) {
      mismatched_.push_back(absl::StrCat(file, " has dtype ", SafetensorsDTypeName(info->dtype),
                                         " (weights must be F32, F16, BF16 or F64)"));
      return false;
    }
    dtype_ = info->dtype;
    return true;
  }
  SafetensorsDType last_dtype() const { return dtype_; }

  std::vector<std::string> Unexpected() const {
    std::vector<std::string> out;
    for (const std::string& name : files_.names()) {
      if (used_.count(name) || absl::EndsWith(name, ".rotary_emb.inv_freq")) continue;
      if (name == "lm_head.weight" && config_.tie_word_embeddings) continue;  // tied: unused
      out.push_back(name);
    }
    return out;
  }
  absl::Status ToStatus(const std::string& dir) const {
    const std::vector<std::string> unexpected = Unexpected();
    if (missing_.empty() && mismatched_.empty() && unexpected.empty()) return absl::OkStatus();
    auto list = [](const char* what, const std::vector<std::string>& v) -> std::string {
      if (v.empty()) return "";
      const std::vector<std::string> shown(v.begin(), v.begin() + std::min(v.size(), kShown));
      return absl::StrCat("; ", v.size(), " ", what, ": ", absl::StrJoin(shown, ", "),
                          v.size() > kShown ? ", ..." : "");
    };
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": the weights do not match config.json (", HfArchName(config_.arch), ", ",
        config_.num_hidden_layers, " layers, hidden_size ", config_.hidden_size, ")",
        list("missing", missing_), list("wrong", mismatched_),
        list("unexpected (biases, quantisation or another architecture?)", unexpected)));
  }

 private:
  const SafetensorsSet& files_;
  const HfConfig& config_;
  SafetensorsDType dtype_ = SafetensorsDType::kF32;
  std::set<std::string> used_;
  std::vector<std::string> missing_, mismatched_;
};

}  // namespace

bool HfCheckpoint::IsHfDir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / "config.json", ec);
}

absl::StatusOr<std::unique_ptr<HfCheckpoint>> HfCheckpoint::Open(const std::string& dir) {
  if (!IsHfDir(dir)) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": not a Hugging Face model directory (no config.json)"));
  }
  std::unique_ptr<HfCheckpoint> ckpt(new HfCheckpoint());
  ckpt->dir_ = dir;
  absl::StatusOr<HfConfig> config = ReadHfConfig((fs::path(dir) / "config.json").string());
  if (!config.ok()) return config.status();
  ckpt->config_ = *config;
  std::error_code ec;
  if (!fs::exists(fs::path(dir) / kSafetensorsSingleFile, ec) &&
      !fs::exists(fs::path(dir) / kSafetensorsIndexFile, ec) &&
      fs::exists(fs::path(dir) / "pytorch_model.bin", ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": holds pytorch_model.bin (pickle), which is not read; save it with "
             "safetensors (transformers' save_pretrained does by default)"));
  }
  absl::StatusOr<std::unique_ptr<SafetensorsSet>> files = SafetensorsSet::Open(dir);
  if (!files.ok()) return files.status();
  ckpt->files_ = *std::move(files);
  const std::string tokenizer = (fs::path(dir) / "tokenizer.model").string();
  if (fs::is_regular_file(tokenizer, ec)) ckpt->tokenizer_path_ = tokenizer;

  const HfConfig& c = ckpt->config_;
  const int64_t V = c.vocab_size, D = c.hidden_size, I = c.intermediate_size;
  const int64_t hd = D / c.num_attention_heads;
  const int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  const int64_t E = c.num_local_experts;
  Mapper m(*ckpt->files_, c);
  auto use = [&](const std::string& ours, const std::string& file, const Shape& shape,
                 const std::string& why) {
    if (m.Check(file, shape, why)) ckpt->sources_[ours] = {file, -1, shape, m.last_dtype()};
  };
  auto same = [&](const std::string& name, const Shape& shape, const std::string& why) {
    use(name, name, shape, why);
  };
  const std::string vd = absl::StrCat("vocab_size ", V, ", hidden_size ", D);
  const std::string dd = absl::StrCat("hidden_size ", D);
  const std::string id = absl::StrCat("intermediate_size ", I, ", hidden_size ", D);
  same("model.embed_tokens.weight", {V, D}, vd);
  same("model.norm.weight", {D}, dd);
  if (!c.tie_word_embeddings) same("lm_head.weight", {V, D}, vd);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = Layer(i);
    same(p + "input_layernorm.weight", {D}, dd);
    same(p + "post_attention_layernorm.weight", {D}, dd);
    const std::string heads = absl::StrCat(c.num_attention_heads, " heads of ", hd, ", ",
                                           c.num_key_value_heads, " key/value heads");
    same(p + "self_attn.q_proj.weight", {q, D}, heads);
    same(p + "self_attn.k_proj.weight", {kv, D}, heads);
    same(p + "self_attn.v_proj.weight", {kv, D}, heads);
    same(p + "self_attn.o_proj.weight", {D, q}, heads);
    if (!c.is_moe()) {
      same(p + "mlp.gate_proj.weight", {I, D}, id);
      same(p + "mlp.up_proj.weight", {I, D}, id);
      same(p + "mlp.down_proj.weight", {D, I}, id);
      continue;
    }
    const std::string ours = p + "block_sparse_moe.";
    const std::string experts = absl::StrCat("num_local_experts ", E, ", ", id);
    const std::string router = ours + "gate.weight";
    use(router, m.Has(router) || !m.Has(p + "mlp.gate.weight") ? router : p + "mlp.gate.weight",
        {E, D}, absl::StrCat("num_local_experts ", E, ", hidden_size ", D));
    const std::string gate_up = p + "mlp.experts.gate_up_proj", down = p + "mlp.experts.down_proj";
    if (m.Has(ours + "experts.0.w1.weight") || !m.Has(gate_up)) {
      for (int64_t e = 0; e < E; ++e) {
        const std::string x = absl::StrCat(ours, "experts.", e, ".");
        same(x + "w1.weight", {I, D}, id);
        same(x + "w3.weight", {I, D}, id);
        same(x + "w2.weight", {D, I}, id);
      }
      continue;
    }
    ckpt->fused_ = true;
    const bool gate_up_ok = m.Check(gate_up, {E, 2 * I, D}, experts);
    const SafetensorsDType gate_up_dtype = m.last_dtype();
    const bool down_ok = m.Check(down, {E, D, I}, experts);
    if (!gate_up_ok || !down_ok) continue;
    for (int64_t e = 0; e < E; ++e) {
      const std::string x = absl::StrCat(ours, "experts.", e, ".");
      ckpt->sources_[x + "w1.weight"] = {gate_up, e * 2 * I * D, {I, D}, gate_up_dtype};
      ckpt->sources_[x + "w3.weight"] = {gate_up, e * 2 * I * D + I * D, {I, D}, gate_up_dtype};
      ckpt->sources_[x + "w2.weight"] = {down, e * D * I, {D, I}, m.last_dtype()};
    }
  }
  if (absl::Status s = m.ToStatus(dir); !s.ok()) return s;
  return ckpt;
}

std::vector<std::string> HfCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(sources_.size());
  for (const auto& entry : sources_) out.push_back(entry.first);
  return out;
}

absl::StatusOr<SafetensorsTensorInfo> HfCheckpoint::Info(absl::string_view name) const {
  auto it = sources_.find(name);
  if (it == sources_.end())
    return absl::NotFoundError(absl::StrCat(dir_, ": no tensor ", QuoteTensorName(name)));
  SafetensorsTensorInfo info;
  info.name = std::string(name);
  info.dtype = it->second.dtype;
  info.shape = it->second.shape;
  return info;
}

absl::Status HfCheckpoint::ReadInto(absl::string_view name, const Tensor& dst) const {
  auto it = sources_.find(name);
  if (it == sources_.end())
    return absl::NotFoundError(absl::StrCat(dir_, ": no tensor ", QuoteTensorName(name)));
  const Source& src = it->second;
  if (!dst.defined() || dst.shape() != src.shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir_, ": tensor ", QuoteTensorName(name), " is ", ShapeToString(src.shape), ", read into ",
        dst.defined() ? dst.ToString() : "an undefined tensor"));
  }
  if (src.first < 0) return files_->ReadInto(src.file_tensor, dst);
  return files_->ReadRangeInto(src.file_tensor, src.first, dst);
}

}  // namespace sb
