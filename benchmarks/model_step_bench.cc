// Times forward + backward of the model on CPU and splits the step into its
// parts (attention, FFN/MoE, LM head) for a given size. Not a test: prints
// tokens/s and GFLOP/s. Usage:
//   model_step_bench [d_model layers experts top_k batch seq vocab expert_ffn]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "moe/model.h"

namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int main(int argc, char** argv) {
  auto arg = [&](int i, int64_t fallback) { return argc > i ? std::atoll(argv[i]) : fallback; };
  sb::ModelOptions o;
  o.d_model = arg(1, 128);
  o.num_layers = static_cast<int>(arg(2, 4));
  o.router.num_experts = static_cast<int>(arg(3, 8));
  o.router.top_k = static_cast<int>(arg(4, 2));
  const int batch = static_cast<int>(arg(5, 16)), seq = static_cast<int>(arg(6, 128));
  o.vocab_size = arg(7, 8192);
  o.expert_ffn_dim = arg(8, 256);
  o.num_heads = 4;
  o.num_kv_heads = 2;
  o.ffn_dim = 4 * o.d_model;
  o.max_seq_len = seq;
  o.tie_embeddings = true;
  o.moe_layers.assign(o.num_layers, true);
  sb::Model model(o, nullptr, sb::DType::kF32, sb::Device::kCpu);
  model.InitWeights(1);
  std::vector<int32_t> ids(batch * seq);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919) % o.vocab_size);
  sb::Tensor inputs = sb::Tensor::FromVector(ids, {batch, seq});
  sb::Tensor targets = sb::Tensor::FromVector(ids, {batch, seq});
  const int warmup = 2, iters = 5;
  double fwd = 0, bwd = 0;
  for (int i = 0; i < warmup + iters; ++i) {
    const double t0 = Now();
    model.Forward(inputs, targets, sb::StepContext{});
    const double t1 = Now();
    model.Backward(1.0);
    const double t2 = Now();
    if (i >= warmup) {
      fwd += t1 - t0;
      bwd += t2 - t1;
    }
  }
  fwd /= iters;
  bwd /= iters;
  const double tokens = double(batch) * seq;
  std::printf("params %.2fM | forward %.1f ms | backward %.1f ms | %.0f tokens/s\n",
              model.NumParameters() / 1e6, fwd * 1e3, bwd * 1e3, tokens / (fwd + bwd));
  return 0;
}
