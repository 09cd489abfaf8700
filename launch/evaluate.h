// `switchboard eval`: validation loss, perplexity and routing statistics of
// a model over a prepared token-shard dataset. Every window of seq_len + 1
// tokens of the data (one epoch of data/window_sampler.h: each window once)
// is evaluated, in evaluation mode (no jitter, moe.capacity_factor_eval),
// in batches of batch_size windows (capacity is per batch, as in training's
// evaluation). Loss = mean cross-entropy over all targets, in nats.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/shard_source.h"
#include "moe/model.h"

namespace sb {

struct EvalOptions {
  int batch_size = 8;
  int seq_len = 256;
  int64_t max_windows = 0;  // 0: all of them
  bool progress = false;    // a progress line on stderr
};

struct LayerEvalStats {
  int layer = 0;                 // block index
  std::vector<int64_t> routed;   // [E] choices per expert before dropping, summed
  std::vector<int64_t> kept;     // [E] after dropping
  double entropy = 0;            // mean router entropy per token, nats
  double aux_loss = 0;           // mean over batches of E * sum f_e P_e (balanced 1)
  double z_loss = 0;             // mean over batches
  double dropped_fraction() const;
};

struct EvalResult {
  double loss = 0;
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;
  int64_t windows = 0;
  double seconds = 0;
  std::vector<LayerEvalStats> layers;
};

absl::StatusOr<EvalResult> EvaluateModel(Model& model, ShardSource& data, const EvalOptions& options);

// The result as JSON (what eval --json writes).
std::string EvalResultJson(const EvalResult& result);

}  // namespace sb
