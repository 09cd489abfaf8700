#include "launch/router_prompts.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "data/tokenizer.h"
#include "moe/inference/decoder.h"
#include "moe/io/file_util.h"
#include "moe/io/json_strict.h"
#include "moe/ops/ops.h"

namespace sb {
namespace {

using json = nlohmann::json;

absl::Status PromptsError(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

absl::StatusOr<std::vector<std::string>> StringList(const std::string& path, const json& entry,
                                                    const std::string& where, const char* key) {
  std::vector<std::string> out;
  auto it = entry.find(key);
  if (it == entry.end() || it->is_null()) return out;
  if (!it->is_array()) return PromptsError(path, absl::StrCat(where, ".", key, " must be a list of strings"));
  for (const json& s : *it) {
    if (!s.is_string() || s.get<std::string>().empty()) {
      return PromptsError(path, absl::StrCat(where, ".", key, " holds ", s.dump().substr(0, 40),
                                             ": prompts are non-empty strings"));
    }
    out.push_back(s.get<std::string>());
  }
  return out;
}

}  // namespace

absl::StatusOr<RouterPrompts> ReadRouterPrompts(const std::string& path, int num_experts) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, 64 << 20);
  if (!text.ok()) return text.status();
  absl::StatusOr<json> root = ParseJsonStrict(path, *text);
  if (!root.ok()) return root.status();
  if (!root->is_object()) return PromptsError(path, "not a JSON object");
  RouterPrompts prompts;
  for (const auto& [key, value] : root->items()) {
    if (key == "prepend_bos") {
      if (!value.is_boolean()) return PromptsError(path, "prepend_bos must be true or false");
      prompts.prepend_bos = value.get<bool>();
    } else if (key != "experts") {
      return PromptsError(path, absl::StrCat("unknown key '", key, "' (prepend_bos, experts)"));
    }
  }
  auto experts = root->find("experts");
  if (experts == root->end() || !experts->is_array()) {
    return PromptsError(path, "no \"experts\" list (one entry per expert)");
  }
  if (static_cast<int>(experts->size()) != num_experts) {
    return PromptsError(path, absl::StrCat("lists ", experts->size(), " experts, moe.num_experts = ",
                                           num_experts));
  }
  for (size_t e = 0; e < experts->size(); ++e) {
    const json& entry = (*experts)[e];
    const std::string where = absl::StrCat("experts[", e, "]");
    if (!entry.is_object()) return PromptsError(path, where + " is not an object");
    for (const auto& item : entry.items()) {
      if (item.key() != "positive_prompts" && item.key() != "negative_prompts") {
        return PromptsError(path, absl::StrCat(where, ": unknown key '", item.key(),
                                               "' (positive_prompts, negative_prompts)"));
      }
    }
    ExpertPrompts ep;
    auto pos = StringList(path, entry, where, "positive_prompts");
    if (!pos.ok()) return pos.status();
    auto neg = StringList(path, entry, where, "negative_prompts");
    if (!neg.ok()) return neg.status();
    if (pos->empty()) return PromptsError(path, where + " has no positive_prompts");
    ep.positive = *std::move(pos);
    ep.negative = *std::move(neg);
    prompts.experts.push_back(std::move(ep));
  }
  return prompts;
}

absl::StatusOr<std::vector<Tensor>> LastTokenStates(
    Model& dense, const std::vector<std::vector<int32_t>>& prompts) {
  const ModelOptions& o = dense.options();
  int64_t longest = 1;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t n = static_cast<int64_t>(prompts[i].size());
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("prompt ", i, " has no tokens"));
    if (n > o.max_seq_len) {
      return absl::InvalidArgumentError(absl::StrCat("prompt ", i, " has ", n,
                                                     " tokens, more than model.max_seq_len = ",
                                                     o.max_seq_len));
    }
    for (int32_t id : prompts[i]) {
      if (id < 0 || id >= o.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("prompt ", i, ": token id ", id, " outside model.vocab_size ", o.vocab_size));
      }
    }
    longest = std::max(longest, n);
  }
  Decoder decoder(dense, longest);
  std::vector<Tensor> out;
  for (const std::vector<int32_t>& p : prompts) {
    decoder.Reset();
    std::vector<Tensor> inputs;
    decoder.Append(p, &inputs);
    Tensor states = Tensor::Empty({o.num_layers, o.d_model}, DType::kF64);
    for (int l = 0; l < o.num_layers; ++l) {
      const Tensor last = inputs[l].Rows(inputs[l].dim(0) - 1, inputs[l].dim(0));
      Tensor host = Tensor::Empty(last.shape(), last.dtype());
      ops::Copy(last, host);
      ops::Convert(host, states.Rows(l, l + 1).Reshape(last.shape()));
    }
    out.push_back(states);
  }
  return out;
}

std::vector<Tensor> RouterRowsFromStates(const std::vector<std::vector<Tensor>>& positive,
                                         const std::vector<std::vector<Tensor>>& negative) {
  SB_CHECK(!positive.empty() && positive.size() == negative.size());
  const int64_t E = static_cast<int64_t>(positive.size());
  const int64_t L = positive[0].at(0).dim(0), D = positive[0][0].dim(1);
  std::vector<Tensor> routers;
  for (int64_t l = 0; l < L; ++l) routers.push_back(Tensor::Zeros({E, D}, DType::kF64));
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t l = 0; l < L; ++l) {
      double* row = routers[l].data<double>() + e * D;
      // Means over prompts; the negatives' mean is subtracted.
      for (const auto* set : {&positive[e], &negative[e]}) {
        const double sign = set == &positive[e] ? 1.0 : -1.0;
        for (const Tensor& states : *set) {
          const double* h = states.data<double>() + l * D;
          for (int64_t d = 0; d < D; ++d) row[d] += sign * h[d] / static_cast<double>(set->size());
        }
      }
      double norm = 0;
      for (int64_t d = 0; d < D; ++d) norm += row[d] * row[d];
      norm = std::max(std::sqrt(norm), 1e-8);
      for (int64_t d = 0; d < D; ++d) row[d] /= norm;
    }
  }
  return routers;
}

absl::StatusOr<std::vector<Tensor>> RouterRowsFromPrompts(Model& dense, const RouterPrompts& prompts,
                                                          const std::string& tokenizer_path) {
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load(tokenizer_path, &error);
  if (!tokenizer) return absl::InvalidArgumentError(absl::StrCat(tokenizer_path, ": ", error));
  if (prompts.prepend_bos && tokenizer->bos_id() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        tokenizer_path, ": has no BOS piece; set \"prepend_bos\": false in the prompts file"));
  }
  auto encode = [&](const std::vector<std::string>& texts)
      -> absl::StatusOr<std::vector<std::vector<int32_t>>> {
    std::vector<std::vector<int32_t>> out;
    for (const std::string& text : texts) {
      std::vector<int32_t> ids;
      if (prompts.prepend_bos) ids.push_back(tokenizer->bos_id());
      std::vector<int32_t> encoded;
      if (!tokenizer->Encode(text, &encoded, &error)) {
        return absl::InvalidArgumentError(absl::StrCat(tokenizer_path, ": ", error));
      }
      ids.insert(ids.end(), encoded.begin(), encoded.end());
      out.push_back(std::move(ids));
    }
    return out;
  };
  std::vector<std::vector<Tensor>> positive, negative;
  for (size_t e = 0; e < prompts.experts.size(); ++e) {
    for (auto [texts, states] : {std::pair{&prompts.experts[e].positive, &positive},
                                 std::pair{&prompts.experts[e].negative, &negative}}) {
      auto ids = encode(*texts);
      if (!ids.ok()) return ids.status();
      auto s = LastTokenStates(dense, *ids);
      if (!s.ok()) {
        return absl::Status(s.status().code(),
                            absl::StrCat("router prompts of expert ", e, ": ", s.status().message()));
      }
      states->push_back(*std::move(s));
    }
  }
  return RouterRowsFromStates(positive, negative);
}

}  // namespace sb
