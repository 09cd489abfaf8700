// Shared by the checkpoint tests: a small MoE config, one simulated rank
// (model + AdamW at some expert-parallel layout), and contents that are a
// function of the GLOBAL tensor name (expert id substituted), filled and
// checked without the code under test, so that any layout can be compared
// with any other element by element.
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "launch/checkpoint.h"
#include "launch/model_factory.h"
#include "tests/testing/fake_ranks.h"

namespace sb::testing {

// 3 blocks (dense, MoE, MoE), 4 experts of width 6, top-2, dropless; with a
// noise weight, a shared expert and a selection bias (routing variants) so
// that every kind of tensor a model can save is saved and resharded.
inline TrainConfig SmallConfig(int ep = 1, const std::string& optimizer = "ADAMW") {
  absl::StatusOr<TrainConfig> config = ParseConfigText(
      absl::StrCat("model { vocab_size: 11 d_model: 8 num_layers: 3 num_heads: 2 num_kv_heads: 1 "
                   "ffn_dim: 12 expert_ffn_dim: 6 max_seq_len: 16 }\n"
                   "moe { num_experts: 4 top_k: 2 capacity_factor_train: 0 "
                   "capacity_factor_eval: 0 moe_layers: [1, 2] noisy_gating: true "
                   "num_shared_experts: 1 aux_free_bias_update_rate: 0.01 }\n"
                   "parallel { expert_parallel_size: ",
                   ep, " }\noptimizer { name: ", optimizer,
                   " }\ntrain { steps: 100 micro_batch_size: 2 seq_len: 4 }\n"),
      "SmallConfig");
  SB_CHECK(config.ok()) << config.status();
  return *config;
}

struct SimRank {
  std::unique_ptr<FakeEpDispatcher> dispatcher;  // null at ep = 1
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> optimizer;
  int64_t first_expert = 0;
};

inline SimRank MakeSimRank(const TrainConfig& config, int ep_rank) {
  SimRank r;
  const int ep = config.parallel().expert_parallel_size();
  if (ep > 1) r.dispatcher = std::make_unique<FakeEpDispatcher>(ep, ep_rank);
  r.model = std::make_unique<Model>(ModelOptionsFromConfig(config), r.dispatcher.get(),
                                    DType::kF32, Device::kCpu);
  r.model->InitWeights(config.train().seed());
  r.optimizer = MakeOptimizer(config.optimizer(), r.model->Parameters());
  r.first_expert = int64_t{ep_rank} * (config.moe().num_experts() / ep);
  return r;
}

inline CheckpointTopology SimTopology(int rank, int world, int ep, FakeCollective* collective) {
  CheckpointTopology t;
  t.rank = rank;
  t.world_size = world;
  t.ep_rank = rank % ep;
  t.ep_size = ep;
  t.dp_rank = rank / ep;
  if (collective) t.all_ok = [collective](bool ok) { return collective->AllOk(ok); };
  return t;
}

// Deterministic value of element i of the tensor with this global name.
inline float ValueAt(const std::string& global_name, int64_t i, uint64_t salt) {
  const uint64_t h = HashName(global_name) ^ salt;
  return static_cast<float>(static_cast<int64_t>((h + 2654435761ULL * static_cast<uint64_t>(i)) % 2001) -
                            1000) / 1000.0f;
}

// fn(global name, f32 data of one slice, elements) over a [E_local, ...]
// stack named with "{expert}" (or a plain tensor).
template <typename Fn>
void ForEachGlobalSlice(const std::string& name, const Tensor& t, int64_t first_expert, Fn fn) {
  const size_t key = name.find("{expert}");
  if (key == std::string::npos) {
    fn(name, t.data<float>(), t.numel());
    return;
  }
  const int64_t per = t.numel() / t.dim(0);
  for (int64_t e = 0; e < t.dim(0); ++e) {
    const std::string global = name.substr(0, key) + std::to_string(first_expert + e) +
                               name.substr(key + std::strlen("{expert}"));
    fn(global, t.data<float>() + e * per, per);
  }
}

// Visits every weight (buffers included) and optimizer state tensor of a rank by global name.
template <typename Fn>
void ForEachGlobal(SimRank& r, Fn fn) {
  for (Parameter* p : r.model->WeightTensors()) ForEachGlobalSlice(p->name, p->value, r.first_expert, fn);
  for (const auto& [name, t] : r.optimizer->State()) ForEachGlobalSlice(name, t, r.first_expert, fn);
}

inline void FillByName(SimRank& r, uint64_t salt) {
  ForEachGlobal(r, [&](const std::string& name, float* data, int64_t n) {
    for (int64_t i = 0; i < n; ++i) data[i] = ValueAt(name, i, salt);
  });
}

// "" when every element matches, else the first mismatching name.
inline std::string FirstMismatch(SimRank& r, uint64_t salt) {
  std::string bad;
  ForEachGlobal(r, [&](const std::string& name, float* data, int64_t n) {
    for (int64_t i = 0; i < n && bad.empty(); ++i)
      if (data[i] != ValueAt(name, i, salt)) bad = absl::StrCat(name, "[", i, "]");
  });
  return bad;
}

inline switchboard::TrainerState SimState(const TrainConfig& config, int64_t step,
                                          int64_t optimizer_step) {
  switchboard::TrainerState state;
  state.set_step(step);
  state.set_optimizer_step(optimizer_step);
  state.set_micro_batches_consumed(step * 2);
  state.set_tokens_seen(step * 16);
  state.set_seed(config.train().seed());
  *state.mutable_config() = ResolvedConfig(config);
  return state;
}

// Saves checkpoint `step` of a single-process SmallConfig run whose
// contents are FillByName(salt).
inline absl::Status SaveFilled(const std::string& run_dir, int64_t step, uint64_t salt,
                               const CheckpointSaveOptions& options = {}) {
  const TrainConfig config = SmallConfig();
  SimRank r = MakeSimRank(config, 0);
  FillByName(r, salt);
  return SaveCheckpoint(run_dir, SimState(config, step, step), *r.model, *r.optimizer,
                        SimTopology(0, 1, 1, nullptr), options);
}

// Loads step_dir into a fresh single-process rank of `config`.
inline absl::Status LoadInto(const std::string& step_dir, const TrainConfig& config = SmallConfig()) {
  SimRank r = MakeSimRank(config, 0);
  return LoadCheckpoint(step_dir, config, *r.model, *r.optimizer, SimTopology(0, 1, 1, nullptr))
      .status();
}

}  // namespace sb::testing
