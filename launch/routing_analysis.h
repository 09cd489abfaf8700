// What `switchboard analyze-routing` computes from the routing decisions of
// a model over some data (docs/cli.md, "analyze-routing"):
// - expert load per MoE layer: choices routed to / kept by each expert, the
//   busiest expert over the mean, the coefficient of variation, the load's
//   entropy over log E (1 = uniform), dropped fraction, router entropy;
// - token -> expert: for the most frequent input tokens, how their first
//   choices spread over the experts of each layer (share of the top expert:
//   1 = the token always goes to one expert);
// - co-selection (top-k >= 2): how often each unordered pair of experts is
//   chosen together for one token, and that count over what independent
//   choices with the same marginals would give (lift; > 1 = pairs that go
//   together);
// - layer-to-layer agreement of first choices for every pair of MoE layers:
//   normalised mutual information I(a; b) / sqrt(H(a) H(b)) (0 = independent,
//   1 = one layer's expert determines the other's); best-match agreement
//   [a][b], the share of tokens whose layer-b expert is the one most often
//   paired with their layer-a expert; and Goodman and Kruskal's lambda, that
//   share beyond what always guessing layer b's busiest expert gets (0 =
//   layer a's choice does not help predict layer b's, 1 = determines it).
//   Expert ids of two layers name unrelated experts, so "same id" is not
//   measured.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "nlohmann/json.hpp"

namespace sb {

class RoutingAnalysis {
 public:
  // moe_blocks: block index of each MoE layer (for labels).
  RoutingAnalysis(std::vector<int> moe_blocks, int num_experts, int top_k);

  // One micro-batch: tokens [T] input ids; per MoE layer, expert_ids [T * k]
  // (row-major [T, k], by descending probability) and slots [T * k] (-1 =
  // dropped), and the layer's mean router entropy (nats) on these tokens.
  void Add(const std::vector<int32_t>& tokens, const std::vector<std::vector<int32_t>>& expert_ids,
           const std::vector<std::vector<int32_t>>& slots, const std::vector<double>& entropy);

  // The summary above as JSON: {"tokens", "layers": [...], "top_tokens": [...],
  // "layer_agreement": {...}}. piece(id) labels a token.
  nlohmann::json Summary(int top_tokens, const std::function<std::string(int32_t)>& piece) const;

 private:
  struct Layer {
    std::vector<int64_t> routed, kept;  // [E]
    std::vector<int64_t> pairs;         // [E, E], unordered pairs counted at (min, max)
    double entropy_sum = 0.0;           // sum over batches of entropy * tokens
  };
  int num_layers() const { return static_cast<int>(moe_blocks_.size()); }

  std::vector<int> moe_blocks_;
  int num_experts_, top_k_;
  int64_t tokens_ = 0;
  std::vector<Layer> layers_;
  // token id -> [count, then per layer E first-choice counts]
  std::unordered_map<int32_t, std::vector<int64_t>> by_token_;
  // For layer pairs a < b (row-major over a, then b > a): [E, E] first-choice contingency.
  std::vector<std::vector<int64_t>> joint_;
};

}  // namespace sb
