// Wall time of the model's phases (attention, router, permutation, dispatch,
// experts, combine, LM head + loss, ...) summed over forward and backward,
// for the benchmarks' step-time breakdown (benchmarks/step_breakdown_bench.cc,
// docs/benchmarks.md). Off by default: a disabled scope costs a load and a
// branch. Host wall time: on a GPU a phase would time its kernel launches,
// not the kernels, unless the device is synchronised at each scope (not done).
// One process-wide set of counters; the layers run on one host thread.
#pragma once

#include <chrono>

namespace sb {

enum class Phase : int {
  kEmbedding = 0,  // token embedding lookup and its gradient
  kNorm,           // RMSNorms
  kAttention,      // q/k/v/o projections, RoPE, causal attention
  kRouter,         // router GEMMs, softmax, top-k, capacity, router losses
  kPermute,        // rows to expert order (and the backward scatter)
  kDispatch,       // rows into the experts' ranks (all-to-all or copy), both passes
  kExperts,        // expert SwiGLU GEMMs and activation
  kCombine,        // rows back from the experts, both passes
  kUnpermute,      // gate-weighted sum back to tokens (and its backward)
  kLmHeadLoss,     // final projection to the vocabulary and cross-entropy
  kCount
};

// "attention", "lm_head_loss", ...
const char* PhaseName(Phase phase);

class PhaseTimer {
 public:
  static void Enable(bool on);
  static bool enabled() { return enabled_; }
  static void Reset();
  static double Seconds(Phase phase) { return seconds_[static_cast<int>(phase)]; }
  static void Add(Phase phase, double seconds) { seconds_[static_cast<int>(phase)] += seconds; }

 private:
  static bool enabled_;
  static double seconds_[static_cast<int>(Phase::kCount)];
};

// Adds the wall time from construction to destruction to `phase` (when enabled).
class PhaseScope {
 public:
  explicit PhaseScope(Phase phase) : phase_(phase), on_(PhaseTimer::enabled()) {
    if (on_) start_ = std::chrono::steady_clock::now();
  }
  ~PhaseScope() {
    if (on_) {
      PhaseTimer::Add(phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    }
  }
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  Phase phase_;
  bool on_;
  std::chrono::steady_clock::time_point start_;
};

// f() with its wall time added to `phase`; returns what f returns.
template <typename F>
auto Timed(Phase phase, F&& f) {
  PhaseScope scope(phase);
  return f();
}

}  // namespace sb
