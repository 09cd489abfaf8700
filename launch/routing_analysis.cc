#include "launch/routing_analysis.h"

#include <algorithm>
#include <cmath>

#include "moe/core/check.h"

namespace sb {
namespace {

// Entropy (nats) of counts; 0 for an empty vector.
double Entropy(const std::vector<double>& counts) {
  double total = 0.0, h = 0.0;
  for (double c : counts) total += c;
  if (total <= 0) return 0.0;
  for (double c : counts)
    if (c > 0) h -= c / total * std::log(c / total);
  return h;
}

size_t PairIndex(int a, int b, int layers) {
  // Pairs (0,1), (0,2), ..., (0,L-1), (1,2), ...
  return static_cast<size_t>(a * layers - a * (a + 1) / 2 + (b - a - 1));
}

}  // namespace

RoutingAnalysis::RoutingAnalysis(std::vector<int> moe_blocks, int num_experts, int top_k)
    : moe_blocks_(std::move(moe_blocks)), num_experts_(num_experts), top_k_(top_k) {
  const size_t E = static_cast<size_t>(num_experts);
  layers_.assign(moe_blocks_.size(), Layer{std::vector<int64_t>(E), std::vector<int64_t>(E),
                                           std::vector<int64_t>(E * E), 0.0});
  const int L = num_layers();
  joint_.assign(static_cast<size_t>(L * (L - 1) / 2), std::vector<int64_t>(E * E));
}

void RoutingAnalysis::Add(const std::vector<int32_t>& tokens,
                          const std::vector<std::vector<int32_t>>& expert_ids,
                          const std::vector<std::vector<int32_t>>& slots,
                          const std::vector<double>& entropy) {
  const int L = num_layers(), E = num_experts_, k = top_k_;
  const size_t T = tokens.size();
  SB_CHECK(static_cast<int>(expert_ids.size()) == L && static_cast<int>(slots.size()) == L &&
           static_cast<int>(entropy.size()) == L);
  for (int l = 0; l < L; ++l) {
    SB_CHECK(expert_ids[l].size() == T * k && slots[l].size() == T * k) << "layer " << l;
    for (int32_t e : expert_ids[l]) SB_CHECK(e >= 0 && e < E) << "expert id " << e;
  }
  for (int l = 0; l < L; ++l) {
    Layer& layer = layers_[l];
    layer.entropy_sum += entropy[l] * static_cast<double>(T);
    for (size_t t = 0; t < T; ++t) {
      const int32_t* ids = &expert_ids[l][t * k];
      for (int r = 0; r < k; ++r) {
        ++layer.routed[ids[r]];
        if (slots[l][t * k + r] >= 0) ++layer.kept[ids[r]];
        for (int q = r + 1; q < k; ++q) {
          const int a = std::min(ids[r], ids[q]), b = std::max(ids[r], ids[q]);
          ++layer.pairs[static_cast<size_t>(a * E + b)];
        }
      }
    }
  }
  for (size_t t = 0; t < T; ++t) {
    std::vector<int64_t>& row = by_token_[tokens[t]];
    if (row.empty()) row.assign(1 + static_cast<size_t>(L * E), 0);
    ++row[0];
    for (int l = 0; l < L; ++l) ++row[1 + static_cast<size_t>(l * E + expert_ids[l][t * k])];
    for (int a = 0; a < L; ++a) {
      for (int b = a + 1; b < L; ++b) {
        ++joint_[PairIndex(a, b, L)][static_cast<size_t>(expert_ids[a][t * k] * E +
                                                         expert_ids[b][t * k])];
      }
    }
  }
  tokens_ += static_cast<int64_t>(T);
}

nlohmann::json RoutingAnalysis::Summary(int top_tokens,
                                        const std::function<std::string(int32_t)>& piece) const {
  const int L = num_layers(), E = num_experts_, k = top_k_;
  nlohmann::json out;
  out["tokens"] = tokens_;
  out["num_experts"] = E;
  out["top_k"] = k;
  out["moe_blocks"] = moe_blocks_;
  out["layers"] = nlohmann::json::array();
  for (int l = 0; l < L; ++l) {
    const Layer& layer = layers_[l];
    std::vector<double> routed(layer.routed.begin(), layer.routed.end());
    double total = 0, kept_total = 0, max = 0;
    for (int e = 0; e < E; ++e) {
      total += routed[e];
      kept_total += static_cast<double>(layer.kept[e]);
      max = std::max(max, routed[e]);
    }
    const double mean = total / E;
    double var = 0;
    for (double c : routed) var += (c - mean) * (c - mean);
    std::vector<double> share(E);
    for (int e = 0; e < E; ++e) share[e] = total > 0 ? routed[e] / total : 0.0;
    nlohmann::json j;
    j["block"] = moe_blocks_[l];
    j["routed"] = layer.routed;
    j["kept"] = layer.kept;
    j["load_share"] = share;
    j["max_over_mean"] = mean > 0 ? max / mean : 0.0;
    j["cv"] = mean > 0 ? std::sqrt(var / E) / mean : 0.0;
    j["load_entropy_ratio"] = E > 1 ? Entropy(routed) / std::log(static_cast<double>(E)) : 1.0;
    j["dropped_fraction"] = total > 0 ? 1.0 - kept_total / total : 0.0;
    j["router_entropy"] = tokens_ > 0 ? layer.entropy_sum / static_cast<double>(tokens_) : 0.0;
    if (k >= 2) {
      // Lift: observed pair count over what two independent draws from the
      // load shares s, conditioned on differing (top-k never repeats an
      // expert), would give: n_pairs * 2 s_a s_b / (1 - sum_c s_c^2).
      const double n_pairs = static_cast<double>(tokens_) * k * (k - 1) / 2;
      double same = 0.0;
      for (double s_c : share) same += s_c * s_c;
      std::vector<std::vector<double>> lift(E, std::vector<double>(E, 0.0));
      std::vector<std::vector<int64_t>> pairs(E, std::vector<int64_t>(E, 0));
      for (int a = 0; a < E; ++a) {
        for (int b = a + 1; b < E; ++b) {
          const int64_t c = layer.pairs[static_cast<size_t>(a * E + b)];
          pairs[a][b] = pairs[b][a] = c;
          const double expected = same < 1.0 ? n_pairs * 2 * share[a] * share[b] / (1.0 - same) : 0.0;
          lift[a][b] = lift[b][a] = expected > 0 ? c / expected : 0.0;
        }
      }
      j["coselection"] = pairs;
      j["coselection_lift"] = lift;
    }
    out["layers"].push_back(j);
  }

  // Most frequent tokens (ties: lower id first).
  std::vector<std::pair<int64_t, int32_t>> freq;
  for (const auto& [id, row] : by_token_) freq.emplace_back(row[0], id);
  std::sort(freq.begin(), freq.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second < y.second;
  });
  out["top_tokens"] = nlohmann::json::array();
  for (int i = 0; i < top_tokens && i < static_cast<int>(freq.size()); ++i) {
    const auto& row = by_token_.at(freq[i].second);
    nlohmann::json t;
    t["id"] = freq[i].second;
    t["piece"] = piece(freq[i].second);
    t["count"] = row[0];
    t["layers"] = nlohmann::json::array();
    for (int l = 0; l < L; ++l) {
      std::vector<int64_t> counts(row.begin() + 1 + l * E, row.begin() + 1 + (l + 1) * E);
      const auto top = std::max_element(counts.begin(), counts.end());
      t["layers"].push_back({{"first_choice", counts},
                             {"top_expert", top - counts.begin()},
                             {"top_share", static_cast<double>(*top) / static_cast<double>(row[0])}});
    }
    out["top_tokens"].push_back(t);
  }

  // Layer-to-layer agreement of first choices. best[a][b]: share of tokens
  // whose layer-b expert is the one most often paired with their layer-a
  // expert; lambda[a][b] (Goodman and Kruskal's lambda) discounts what always
  // guessing layer b's busiest expert gets: (best - max share) / (1 - max share).
  std::vector<std::vector<double>> nmi(L, std::vector<double>(L, 1.0)),
      best(L, std::vector<double>(L, 1.0)), lambda(L, std::vector<double>(L, 1.0));
  for (int a = 0; a < L; ++a) {
    for (int b = a + 1; b < L; ++b) {
      const std::vector<int64_t>& joint = joint_[PairIndex(a, b, L)];
      auto cell = [&](int x, int y) { return static_cast<double>(joint[static_cast<size_t>(x * E + y)]); };
      std::vector<double> pa(E, 0.0), pb(E, 0.0), cells(joint.begin(), joint.end());
      double n = 0, row_best = 0, col_best = 0;
      for (int x = 0; x < E; ++x) {
        double row_max = 0, col_max = 0;
        for (int y = 0; y < E; ++y) {
          pa[x] += cell(x, y);
          pb[y] += cell(x, y);
          n += cell(x, y);
          row_max = std::max(row_max, cell(x, y));
          col_max = std::max(col_max, cell(y, x));
        }
        row_best += row_max;
        col_best += col_max;
      }
      const double ha = Entropy(pa), hb = Entropy(pb);
      const double mi = ha + hb - Entropy(cells);  // I = H(a) + H(b) - H(a, b)
      nmi[a][b] = nmi[b][a] = ha > 0 && hb > 0 ? std::max(0.0, mi) / std::sqrt(ha * hb) : 0.0;
      const double max_a = *std::max_element(pa.begin(), pa.end());
      const double max_b = *std::max_element(pb.begin(), pb.end());
      best[a][b] = n > 0 ? row_best / n : 0.0;
      best[b][a] = n > 0 ? col_best / n : 0.0;
      lambda[a][b] = n > max_b ? (row_best - max_b) / (n - max_b) : 0.0;
      lambda[b][a] = n > max_a ? (col_best - max_a) / (n - max_a) : 0.0;
    }
  }
  out["layer_agreement"] = {{"nmi", nmi}, {"best_match", best}, {"lambda", lambda}};
  return out;
}

}  // namespace sb
