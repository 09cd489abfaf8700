// Model <-> safetensors by Hugging Face name, validating everything before
// the first byte is copied into the model.
#include "moe/io/model_weights.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sb {
namespace {

// Up to kShown problems are listed; the count says how many there were.
constexpr size_t kShown = 8;

// Every name that the model's layout family can hold: all global expert
// ids, not only this rank's.
std::set<std::string> NamesOfAnyLayout(Model& model) {
  std::set<std::string> names;
  const int64_t num_experts = model.options().router.num_experts;
  for (Parameter* p : model.WeightTensors()) {
    if (!p->is_expert()) {
      names.insert(p->name);
      continue;
    }
    Parameter global = *p;  // same name template; SliceName(g) with first_expert 0
    global.first_expert = 0;
    for (int64_t g = 0; g < num_experts; ++g) names.insert(global.SliceName(g));
  }
  return names;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> NamedModelWeights(Model& model,
                                                              WeightSelection selection) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (Parameter* p : model.WeightTensors()) {
    if (!p->is_expert()) {
      if (selection != WeightSelection::kExperts) out.emplace_back(p->name, p->value);
      continue;
    }
    if (selection == WeightSelection::kReplicated) continue;
    const Shape& stack = p->value.shape();  // [E_local, a, b]
    const Shape slice(stack.begin() + 1, stack.end());
    for (int64_t i = 0; i < stack[0]; ++i)
      out.emplace_back(p->SliceName(i), p->value.Rows(i, i + 1).Reshape(slice));
  }
  return out;
}

absl::Status SaveModelWeights(Model& model, const std::string& path,
                              const SaveWeightsOptions& options) {
  std::map<std::string, std::string> metadata = options.metadata;
  // transformers refuses safetensors files whose "format" is not pt/tf/flax/mlx.
  metadata.emplace("format", "pt");
  return WriteSafetensors(path, NamedModelWeights(model, options.selection), metadata,
                          options.float_storage, options.checksums);
}

absl::Status LoadModelWeights(Model& model, const WeightReader& weights,
                              const LoadWeightsOptions& options) {
  const std::vector<std::pair<std::string, Tensor>> wanted = NamedModelWeights(model);
  std::vector<std::string> missing, mismatched, unexpected;
  for (const auto& [name, tensor] : wanted) {
    absl::StatusOr<SafetensorsTensorInfo> info = weights.Info(name);
    if (!info.ok()) {
      missing.push_back(name);
    } else if (info->shape != tensor.shape()) {
      mismatched.push_back(absl::StrCat(name, " is ", ShapeToString(info->shape),
                                        " in the file, the model wants ",
                                        ShapeToString(tensor.shape())));
    } else if (IsFloat(info->dtype) != IsFloating(tensor.dtype()) ||
               (!IsFloat(info->dtype) && SafetensorsDTypeOf(tensor.dtype()) != info->dtype)) {
      mismatched.push_back(absl::StrCat(name, " is ", SafetensorsDTypeName(info->dtype),
                                        " in the file, the model holds ",
                                        DTypeName(tensor.dtype())));
    }
  }
  if (!options.allow_extra) {
    const std::set<std::string> known = NamesOfAnyLayout(model);
    for (const std::string& name : weights.names())
      if (!known.count(name)) unexpected.push_back(name);
  }
  if (!missing.empty() || !mismatched.empty() || !unexpected.empty()) {
    auto list = [](const char* what, const std::vector<std::string>& v) -> std::string {
      if (v.empty()) return "";
      const std::vector<std::string> shown(v.begin(), v.begin() + std::min(v.size(), kShown));
      return absl::StrCat("; ", v.size(), " ", what, ": ", absl::StrJoin(shown, ", "),
                          v.size() > kShown ? ", ..." : "");
    };
    return absl::InvalidArgumentError(
        absl::StrCat(weights.path(), ": does not match the model", list("missing", missing),
                     list("mismatched", mismatched),
                     list("unexpected (LoadWeightsOptions::allow_extra)", unexpected)));
  }
  for (const auto& [name, tensor] : wanted)
    if (absl::Status s = weights.ReadInto(name, tensor); !s.ok()) return s;
  model.RefreshComputeCopies();  // bf16 copies of what was read (mixed precision)
  return absl::OkStatus();
}

}  // namespace sb
