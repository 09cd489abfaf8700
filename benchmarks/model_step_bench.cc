// Times one training step of the model a TrainConfig describes, on the CPU in
// float32: forward (with the loss), backward, and the AdamW update, after
// writing what a second implementation needs to check the same step:
//   model_step_bench --config configs/tiny.textproto [--set k=v]... [--warmup 3]
//       [--iters 10] --out_dir DIR [--json FILE]
// DIR/weights.safetensors: the initial weights (Hugging Face names, f32).
// DIR/batch.safetensors: tokens [B, S+1] i32 (inputs = [:, :-1], targets =
//   [:, 1:]) and grad.<name> f32, every gradient of that batch's total loss.
// FILE (default DIR/switchboard.json): the model and optimizer options, the
//   losses of the batch, and the timings. benchmarks/hf_step_bench.py loads
//   the same weights and batch into Hugging Face's MixtralForCausalLM,
//   checks losses and gradients, then times it on the same step.
// The batch is micro_batch_size x seq_len ids drawn uniformly from the vocab;
// the step runs in training mode (capacity_factor_train, jitter as set).
// Threads: OMP_NUM_THREADS (our kernels and OpenBLAS share one OpenMP pool).
// FLOPs: TrainFlopsPerToken (Megatron's active-parameter count), forward +
// backward only; the AdamW update is timed but not counted. Reported:
// step_ms / tokens_per_s for forward + backward, train_step_ms /
// train_tokens_per_s with the AdamW update (medians over the timed steps).
#include <cblas.h>  // OpenBLAS: openblas_get_corename
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "benchmarks/bench_main.h"
#include "launch/model_factory.h"
#include "moe/core/rng.h"
#include "moe/io/model_weights.h"
#include "moe/io/safetensors.h"
#include "optim/adamw.h"

namespace sb {
namespace {

using bench::Median;
using bench::Now;

std::string JsonList(const std::vector<double>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ", ", [](std::string* out, double x) {
                        absl::StrAppend(out, absl::StrFormat("%.3f", x));
                      }), "]");
}

// "grad.<HF name>" -> view of each gradient; expert stacks split per expert
// under their global id, as the weights file names them.
std::vector<std::pair<std::string, Tensor>> NamedGrads(Model& model) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (Parameter* p : model.Parameters()) {
    if (!p->is_expert()) {
      out.emplace_back("grad." + p->name, p->grad);
      continue;
    }
    const Shape& stack = p->grad.shape();  // [E_local, a, b]
    const Shape slice(stack.begin() + 1, stack.end());
    for (int64_t i = 0; i < stack[0]; ++i)
      out.emplace_back("grad." + p->SliceName(i), p->grad.Rows(i, i + 1).Reshape(slice));
  }
  return out;
}

// The fields reference_model.RefConfig and torch.optim.AdamW need.
std::string OptionsJson(const ModelOptions& o, const TrainConfig& c) {
  std::vector<int> moe(o.moe_layers.begin(), o.moe_layers.end());
  const auto& r = o.router;
  const auto& opt = c.optimizer();
  return absl::StrFormat(
      "\"model\": {\"vocab_size\": %d, \"d_model\": %d, \"num_layers\": %d, \"num_heads\": %d, "
      "\"num_kv_heads\": %d, \"ffn_dim\": %d, \"expert_ffn_dim\": %d, \"rope_theta\": %.17g, "
      "\"norm_eps\": %.17g, \"tie_embeddings\": %s, \"moe_layers\": [%s], \"num_experts\": %d, "
      "\"top_k\": %d, \"normalize_top_k\": %s, \"capacity_factor\": %.17g, \"min_capacity\": %d, "
      "\"aux_loss_coef\": %.17g, \"z_loss_coef\": %.17g, \"router_jitter_eps\": %.17g},\n"
      "  \"optimizer\": {\"name\": \"%s\", \"lr\": %.17g, \"beta1\": %.17g, \"beta2\": %.17g, "
      "\"eps\": %.17g, \"weight_decay\": %.17g, \"decay_norms\": %s, \"decay_embeddings\": %s}",
      o.vocab_size, o.d_model, o.num_layers, o.num_heads, o.num_kv_heads, o.ffn_dim,
      o.expert_ffn_dim, o.rope_theta, o.norm_eps, o.tie_embeddings ? "true" : "false",
      absl::StrJoin(moe, ", "), r.num_experts, r.top_k, r.normalize_top_k ? "true" : "false",
      r.capacity_factor_train, r.min_capacity, r.aux_loss_coef, r.z_loss_coef, r.jitter_eps,
      switchboard::OptimizerConfig::Name_Name(opt.name()), opt.lr(), opt.beta1(), opt.beta2(),
      opt.eps(), opt.weight_decay(), opt.decay_norms() ? "true" : "false",
      opt.decay_embeddings() ? "true" : "false");
}

absl::Status Run(const Flags& flags) {
  auto config = bench::LoadConfig(flags, "configs/tiny.textproto");
  if (!config.ok()) return config.status();
  if (config->optimizer().name() != switchboard::OptimizerConfig::ADAMW) {
    return absl::InvalidArgumentError("model_step_bench times AdamW: set optimizer.name=ADAMW");
  }
  auto warmup = flags.GetInt("warmup", 3);
  auto iters = flags.GetInt("iters", 10);
  if (!warmup.ok()) return warmup.status();
  if (!iters.ok()) return iters.status();
  if (*warmup < 0 || *iters < 1) return absl::InvalidArgumentError("need --warmup >= 0, --iters >= 1");
  const std::string dir = flags.Get("out_dir");
  std::filesystem::create_directories(dir);
  const std::string json_path = flags.Get("json", dir + "/switchboard.json");

  const ModelOptions options = ModelOptionsFromConfig(*config);
  const int64_t B = config->train().micro_batch_size(), S = config->train().seq_len();
  const uint64_t seed = config->train().seed();
  Model model(options, nullptr, DType::kF32, Device::kCpu);
  model.InitWeights(seed);
  if (absl::Status s = SaveModelWeights(model, dir + "/weights.safetensors"); !s.ok()) return s;

  // tokens [B, S+1] i32, uniform over the vocabulary.
  std::vector<int32_t> tokens(B * (S + 1)), in(B * S), tgt(B * S);
  const uint64_t key = StreamKey({seed, 0xba7c4});
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>(UniformAt(key, i) * static_cast<double>(options.vocab_size));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t s = 0; s < S; ++s) {
      in[b * S + s] = tokens[b * (S + 1) + s];
      tgt[b * S + s] = tokens[b * (S + 1) + s + 1];
    }
  }
  const Tensor inputs = Tensor::FromVector(in, {B, S}), targets = Tensor::FromVector(tgt, {B, S});

  // Validation record: the losses and every gradient of this batch at init.
  StepContext ctx;
  ctx.seed = seed;
  const ForwardResult v = model.Forward(inputs, targets, ctx);
  model.Backward(1.0);
  auto saved = NamedGrads(model);
  saved.emplace_back("tokens", Tensor::FromVector(tokens, {B, S + 1}));
  if (absl::Status s = WriteSafetensors(dir + "/batch.safetensors", saved); !s.ok()) return s;

  AdamW adamw(config->optimizer(), model.Parameters());
  std::vector<double> fwd_ms, bwd_ms, opt_ms, step_ms, train_ms;
  for (int64_t i = 0; i < *warmup + *iters; ++i) {
    model.ZeroGrad();
    ctx.step = i;
    const double t0 = Now();
    model.Forward(inputs, targets, ctx);
    const double t1 = Now();
    model.Backward(1.0);
    const double t2 = Now();
    adamw.Step(config->optimizer().lr());
    const double t3 = Now();
    if (i < *warmup) continue;
    fwd_ms.push_back(1e3 * (t1 - t0));
    bwd_ms.push_back(1e3 * (t2 - t1));
    opt_ms.push_back(1e3 * (t3 - t2));
    step_ms.push_back(1e3 * (t2 - t0));
    train_ms.push_back(1e3 * (t3 - t0));
  }
  const double tokens_per_step = static_cast<double>(B * S);
  const double flops_per_token = TrainFlopsPerToken(options, static_cast<int>(S));
  const double step_s = Median(step_ms) / 1e3, train_s = Median(train_ms) / 1e3;
  const int threads = omp_get_max_threads();
  std::printf("switchboard | %d threads | %.2fM params | loss %.6f (ce %.6f) | fwd %.1f bwd %.1f "
              "adamw %.1f ms | %.0f tokens/s | %.1f GFLOP/s (fwd+bwd, median of %lld)\n",
              threads, model.NumParameters() / 1e6, v.total_loss, v.loss, Median(fwd_ms),
              Median(bwd_ms), Median(opt_ms), tokens_per_step / step_s,
              flops_per_token * tokens_per_step / step_s / 1e9, static_cast<long long>(*iters));

  std::FILE* f = std::fopen(json_path.c_str(), "w");
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", json_path));
  std::fprintf(f,
               "{\"impl\": \"switchboard\", \"threads\": %d, \"blas_core\": \"%s\", \"config\": \"%s\", "
               "\"overrides\": [%s],\n"
               "  %s,\n"
               "  \"batch\": %lld, \"seq_len\": %lld, \"seed\": %llu, \"params\": %lld,\n"
               "  \"weights\": \"%s/weights.safetensors\", \"batch_file\": \"%s/batch.safetensors\",\n"
               "  \"loss\": {\"total\": %.9g, \"ce\": %.9g, \"aux\": %.9g, \"z\": %.9g, "
               "\"dropped_fraction\": %.9g},\n"
               "  \"warmup\": %lld, \"iters\": %lld, \"fwd_ms\": %s, \"bwd_ms\": %s, \"adamw_ms\": %s,\n"
               "  \"step_ms\": %.3f, \"tokens_per_s\": %.1f, \"flops_per_token\": %.0f, \"gflops\": %.2f,\n"
               "  \"train_step_ms\": %.3f, \"train_tokens_per_s\": %.1f}\n",
               threads, openblas_get_corename(), flags.Get("config", "configs/tiny.textproto").c_str(),
               absl::StrJoin(flags.All("set"), ", ", [](std::string* out, const std::string& s) {
                 absl::StrAppend(out, "\"", s, "\"");
               }).c_str(),
               OptionsJson(options, *config).c_str(), static_cast<long long>(B),
               static_cast<long long>(S), static_cast<unsigned long long>(seed),
               static_cast<long long>(model.NumParameters()), dir.c_str(), dir.c_str(), v.total_loss,
               v.loss, v.aux_loss, v.z_loss, v.dropped_fraction, static_cast<long long>(*warmup),
               static_cast<long long>(*iters), JsonList(fwd_ms).c_str(), JsonList(bwd_ms).c_str(),
               JsonList(opt_ms).c_str(), 1e3 * step_s, tokens_per_step / step_s, flops_per_token,
               flops_per_token * tokens_per_step / step_s / 1e9, 1e3 * train_s,
               tokens_per_step / train_s);
  std::fclose(f);
  return absl::OkStatus();
}

}  // namespace
}  // namespace sb

int main(int argc, char** argv) {
  return sb::bench::Main(argc, argv, "model_step_bench",
                         {{"config", "TrainConfig text file (default configs/tiny.textproto)"},
                          {"set", "override a config field, a.b=value (repeatable)", false, true},
                          {"warmup", "untimed steps first (default 3)"},
                          {"iters", "timed steps (default 10)"},
                          {"out_dir", "where weights, batch and the JSON report go", false, false, true},
                          {"json", "report path (default OUT_DIR/switchboard.json)"}},
                         sb::Run);
}
