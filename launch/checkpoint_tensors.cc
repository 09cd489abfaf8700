// Optimizer state split by global expert id, and the complete name sets a
// checkpoint is checked against.
#include "launch/checkpoint_tensors.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sb {
namespace {

constexpr size_t kShown = 8;  // problems listed per kind; the count says how many

// `p` as if it held experts [0, ...): SliceName(g) is global expert g's name.
Parameter GlobalTemplate(const Parameter& p) {
  Parameter g;
  g.name = p.name;
  g.kind = p.kind;
  g.first_expert = 0;
  return g;
}

std::string List(const char* what, const std::vector<std::string>& v) {
  if (v.empty()) return "";
  const std::vector<std::string> shown(v.begin(), v.begin() + std::min(v.size(), kShown));
  return absl::StrCat("; ", v.size(), " ", what, ": ", absl::StrJoin(shown, ", "),
                      v.size() > kShown ? ", ..." : "");
}

}  // namespace

absl::StatusOr<std::vector<NamedState>> NamedOptimizerState(
    Optimizer& optimizer, const std::vector<Parameter*>& params) {
  std::map<std::string, const Parameter*> by_name;
  for (const Parameter* p : params) by_name[p->name] = p;
  std::vector<NamedState> out;
  for (const auto& [name, tensor] : optimizer.State()) {
    // Slots have no dots ("exp_avg", "row"); parameter names do.
    const size_t dot = name.rfind('.');
    auto it = dot == std::string::npos ? by_name.end() : by_name.find(name.substr(0, dot));
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state '", name, "' belongs to no parameter"));
    }
    const Parameter& p = *it->second;
    const std::string slot = name.substr(dot + 1);
    if (!p.is_expert()) {
      out.push_back({name, tensor, &p, slot});
      continue;
    }
    const int64_t local = p.value.dim(0);
    if (tensor.ndim() < 1 || tensor.dim(0) != local) {
      return absl::InvalidArgumentError(absl::StrCat("optimizer state '", name, "' is ",
                                                     tensor.ToString(), ", expected dim 0 = ",
                                                     local, " local experts"));
    }
    const Shape slice(tensor.shape().begin() + 1, tensor.shape().end());
    for (int64_t i = 0; i < local; ++i) {
      out.push_back({absl::StrCat(p.SliceName(i), ".", slot), tensor.Rows(i, i + 1).Reshape(slice),
                     &p, slot});
    }
  }
  return out;
}

std::set<std::string> AllWeightNames(const std::vector<Parameter*>& params, int64_t num_experts) {
  std::set<std::string> names;
  for (const Parameter* p : params) {
    if (!p->is_expert()) {
      names.insert(p->name);
      continue;
    }
    const Parameter global = GlobalTemplate(*p);
    for (int64_t g = 0; g < num_experts; ++g) names.insert(global.SliceName(g));
  }
  return names;
}

std::set<std::string> AllStateNames(const std::vector<NamedState>& state,
                                    const std::vector<Parameter*>& params, int64_t num_experts) {
  std::set<std::string> names;
  for (const NamedState& s : state) {
    if (!s.param->is_expert()) {
      names.insert(s.name);
      continue;
    }
    const Parameter global = GlobalTemplate(*s.param);
    for (int64_t g = 0; g < num_experts; ++g) names.insert(absl::StrCat(global.SliceName(g), ".", s.slot));
  }
  return names;
}

absl::Status LoadNamedState(const std::vector<NamedState>& state, const SafetensorsSet& file) {
  std::vector<std::string> missing, mismatched;
  for (const NamedState& s : state) {
    absl::StatusOr<SafetensorsTensorInfo> info = file.Info(s.name);
    if (!info.ok()) {
      missing.push_back(s.name);
    } else if (info->shape != s.view.shape()) {
      mismatched.push_back(absl::StrCat(s.name, " is ", ShapeToString(info->shape),
                                        " in the file, the optimizer holds ",
                                        ShapeToString(s.view.shape())));
    } else if (!IsFloat(info->dtype) || !IsFloating(s.view.dtype())) {
      mismatched.push_back(absl::StrCat(s.name, " is ", SafetensorsDTypeName(info->dtype),
                                        " in the file, the optimizer holds ",
                                        DTypeName(s.view.dtype())));
    }
  }
  if (!missing.empty() || !mismatched.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(),
                                                   ": does not match the optimizer",
                                                   List("missing", missing),
                                                   List("mismatched", mismatched)));
  }
  for (const NamedState& s : state)
    if (absl::Status st = file.ReadInto(s.name, s.view); !st.ok()) return st;
  return absl::OkStatus();
}

}  // namespace sb
