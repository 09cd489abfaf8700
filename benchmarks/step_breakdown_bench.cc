// Step-time breakdown of data x expert parallel training: where a step's
// wall time goes for a given layout, measured by the trainer itself
// (StepTimes: compute, dispatch, combine, gradient sync, optimizer) and by
// the model's phase timers (moe/core/phase_timer.h: embedding, norms,
// attention, router, permute, dispatch, experts, combine, unpermute, LM head
// + loss). One point of benchmarks/scaling.py's sweeps. Run it under mpirun
// with the layout's rank count:
//   mpirun -np 4 build/benchmarks/step_breakdown_bench --ep 2 [--steps 6] [--warmup 2]
//       [--config configs/tiny.textproto] [--set a.b=v]... [--data PATH]
//       [--micro_batch 8] [--seq_len 128] [--global_micro_batches 4]
//       [--zero1 1] [--overlap_grad_sync 0] [--json FILE]
// Data: --data (a prepared token-shard directory, e.g.
// runs/data/python-docs/train, with the config's vocabulary) or, by default,
// a generated word corpus read at byte level (vocab 257). The global batch
// is --global_micro_batches micro-batches per step, so every layout does the
// same work: accum = global_micro_batches / world.
// Validates before timing (world > 1): the first step's loss must equal
// (1e-4 rel) that of one process accumulating the same micro-batches.
// Prints per phase the mean over ranks and steps and the slowest rank's;
// --json adds tokens/s, FLOPs per token, dropped fraction and the peak
// resident memory of every rank.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "configs/config.h"
#include "launch/flags.h"
#include "launch/model_factory.h"
#include "launch/trainer.h"
#include "moe/core/phase_timer.h"
#include "parallel/runtime.h"

namespace sb {
namespace {

std::string WriteCorpus() {
  const auto dir = std::filesystem::temp_directory_path() / ("sb_step_bench_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "corpus.txt").string();
  std::ofstream out(path);
  uint64_t x = 7;
  const char* words[] = {"expert", "token", "router", "the", "of", "gate", "rank", "all",
                         "to", "mixture", "layer", "a", "capacity", "loss", "and", "is"};
  for (int i = 0; i < 60000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    out << words[(x >> 33) % 16] << ((x >> 20) % 11 == 0 ? ".\n" : " ");
  }
  return path;
}

// What each rank measured, in this order (seconds summed over timed steps).
enum Slot { kTotal, kCompute, kDispatch, kCombine, kGradSync, kOptimizer, kFirstPhase };
constexpr int kPhases = static_cast<int>(Phase::kCount);
constexpr int kDropped = kFirstPhase + kPhases, kMaxRss = kDropped + 1, kSlots = kMaxRss + 1;
const char* const kTimeNames[] = {"total", "compute", "dispatch", "combine", "grad_sync", "optimizer"};

struct Options {
  TrainConfig config;
  std::string config_path;
  std::vector<std::string> overrides;
  int ep = 1, steps = 6, warmup = 2, global_micro_batches = 4;
  bool zero1 = false, overlap_grad_sync = true;
  std::string corpus;  // generated, removed at the end
};

absl::StatusOr<Options> ParseOptions(const Flags& flags, int world) {
  Options o;
  o.config_path = flags.Get("config", "configs/tiny.textproto");
  auto config = LoadConfigFile(o.config_path);
  if (!config.ok()) return config.status();
  o.config = *config;
  for (auto [name, out, fallback] : {std::tuple<const char*, int*, int>{"ep", &o.ep, 1},
                                     {"steps", &o.steps, 6},
                                     {"warmup", &o.warmup, 2},
                                     {"global_micro_batches", &o.global_micro_batches, 4}}) {
    auto got = flags.GetInt(name, fallback);
    if (!got.ok()) return got.status();
    *out = static_cast<int>(*got);
  }
  auto zero1 = flags.GetInt("zero1", 0), overlap = flags.GetInt("overlap_grad_sync", 1);
  if (!zero1.ok()) return zero1.status();
  if (!overlap.ok()) return overlap.status();
  o.zero1 = *zero1 != 0;
  o.overlap_grad_sync = *overlap != 0;
  if (o.steps < 1 || o.warmup < 0 || o.global_micro_batches % world != 0) {
    return absl::InvalidArgumentError("need --steps >= 1, --warmup >= 0, --global_micro_batches a multiple of the world");
  }
  std::vector<std::string> sets;
  if (flags.Has("data")) {
    sets.push_back("data.train_path=" + flags.Get("data"));
  } else {
    o.corpus = WriteCorpus();
    sets = {"model.vocab_size=257", "data.train_path=" + o.corpus};
  }
  sets.push_back("data.val_path=");
  for (auto [flag, field] : {std::pair<const char*, const char*>{"micro_batch", "train.micro_batch_size"},
                             {"seq_len", "train.seq_len"}}) {
    if (flags.Has(flag)) sets.push_back(absl::StrCat(field, "=", flags.Get(flag)));
  }
  for (const std::string& s : flags.All("set")) sets.push_back(s);
  o.overrides = flags.All("set");
  sets.push_back(absl::StrCat("train.steps=", o.warmup + o.steps));
  sets.push_back(absl::StrCat("parallel.expert_parallel_size=", o.ep));
  sets.push_back(absl::StrCat("parallel.zero1=", o.zero1 ? "true" : "false"));
  sets.push_back(absl::StrCat("parallel.overlap_grad_sync=", o.overlap_grad_sync ? "true" : "false"));
  for (const std::string& s : sets) {
    if (absl::Status st = ApplyOverride(s, &o.config); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(s, ": ", st.message()));
    }
  }
  o.config.mutable_train()->set_grad_accum_steps(o.global_micro_batches / world);
  return o;
}

std::string JsonNumbers(const std::vector<double>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ", ", [](std::string* out, double x) {
                        absl::StrAppend(out, absl::StrFormat("%.6g", x));
                      }), "]");
}

}  // namespace
}  // namespace sb

int main(int argc, char** argv) {
  using namespace sb;  // NOLINT: a benchmark's main
  const std::vector<FlagSpec> specs = {
      {"config", "TrainConfig (default configs/tiny.textproto)"},
      {"set", "override a config field (repeatable)", false, true},
      {"data", "prepared token shards (default: a generated corpus at byte level)"},
      {"ep", "expert_parallel_size (default 1)"},
      {"steps", "timed steps (default 6)"},
      {"warmup", "untimed steps first (default 2)"},
      {"micro_batch", "train.micro_batch_size (default: the config's)"},
      {"seq_len", "train.seq_len (default: the config's)"},
      {"global_micro_batches", "micro-batches per step over all ranks (default 4)"},
      {"zero1", "1: ZeRO-1 optimizer state"},
      {"overlap_grad_sync", "0: blocking gradient sync (default 1)"},
      {"json", "report path (rank 0 writes)"},
  };
  auto flags = Flags::Parse(std::vector<std::string>(argv + 1, argv + argc), specs);
  if (!flags.ok()) {
    std::fprintf(stderr, "step_breakdown_bench: %s\n\n%s", std::string(flags.status().message()).c_str(),
                 FlagsUsage("step_breakdown_bench", specs).c_str());
    return 2;
  }
  auto runtime = Runtime::Start();
  if (!runtime.ok()) return 1;
  Runtime& rt = **runtime;
  const int world = rt.world_size();
  auto options = ParseOptions(*flags, world);
  if (!rt.AllOk(options.ok())) {
    if (rt.is_chief() && !options.ok()) std::fprintf(stderr, "%s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  const Options& o = *options;
  auto grid = ProcessGrid::Create(rt.world(), o.ep);
  if (!rt.AllOk(grid.ok())) {
    if (rt.is_chief() && !grid.ok()) std::fprintf(stderr, "%s\n", std::string(grid.status().message()).c_str());
    return 2;
  }
  auto trainer = Trainer::Create(o.config, "", {grid->get(), DType::kF32});
  if (!rt.AllOk(trainer.ok())) {
    if (!trainer.ok()) std::fprintf(stderr, "%s\n", std::string(trainer.status().message()).c_str());
    return 2;
  }

  // Validate: step 0 of this layout == one process accumulating everything.
  double reference_loss = NAN;
  if (world > 1) {
    TrainConfig one = o.config;
    one.mutable_parallel()->set_expert_parallel_size(1);
    one.mutable_parallel()->set_zero1(false);
    one.mutable_train()->set_grad_accum_steps(o.global_micro_batches);
    auto ref = Trainer::Create(one, "");
    if (!ref.ok()) rt.Abort(std::string(ref.status().message()), 2);
    auto m = (*ref)->TrainStep(0);
    if (!m.ok()) rt.Abort(std::string(m.status().message()), 2);
    reference_loss = m->loss;
  }
  std::vector<double> mine(kSlots, 0.0);
  double tokens = 0, first_loss = NAN;
  for (int step = 0; step < o.warmup + o.steps; ++step) {
    if (step == o.warmup) {
      PhaseTimer::Reset();
      PhaseTimer::Enable(true);
    }
    auto m = (*trainer)->TrainStep(step);
    if (!m.ok()) rt.Abort(std::string(m.status().message()), 1);
    if (step == 0) first_loss = m->loss;
    if (step == 0 && world > 1 && std::fabs(m->loss - reference_loss) > 1e-4 * std::fabs(reference_loss)) {
      rt.Abort("validation failed: step 0 loss " + std::to_string(m->loss) + " vs one process " +
                   std::to_string(reference_loss),
               1);
    }
    if (step < o.warmup) continue;
    tokens += static_cast<double>(m->tokens);
    const StepTimes& t = m->times;
    for (auto [slot, value] : {std::pair<int, double>{kTotal, t.total}, {kCompute, t.compute},
                               {kDispatch, t.dispatch}, {kCombine, t.combine},
                               {kGradSync, t.grad_sync}, {kOptimizer, t.optimizer}}) {
      mine[slot] += value;
    }
    mine[kDropped] += m->dropped_fraction / o.steps;
  }
  PhaseTimer::Enable(false);
  for (int p = 0; p < kPhases; ++p) mine[kFirstPhase + p] = PhaseTimer::Seconds(static_cast<Phase>(p));
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  mine[kMaxRss] = static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB -> MiB

  Tensor all = Tensor::Zeros({world, kSlots}, DType::kF64);
  rt.world().AllGather(Tensor::FromVector(mine, {1, kSlots}), all);
  const double* a = all.data<double>();
  int slowest = 0;
  for (int r = 1; r < world; ++r)
    if (a[r * kSlots + kTotal] > a[slowest * kSlots + kTotal]) slowest = r;
  // Per step, in seconds: the mean over ranks and the slowest rank's.
  std::vector<double> mean(kSlots, 0.0), worst(kSlots, 0.0), rss(world);
  for (int i = 0; i < kMaxRss; ++i) {
    for (int r = 0; r < world; ++r) mean[i] += a[r * kSlots + i] / world;
    worst[i] = a[slowest * kSlots + i];
    if (i != kDropped) {
      mean[i] /= o.steps;
      worst[i] /= o.steps;
    }
  }
  for (int r = 0; r < world; ++r) rss[r] = a[r * kSlots + kMaxRss];

  if (rt.is_chief()) {
    const auto& train = o.config.train();
    const double step_s = mean[kTotal];
    const double tokens_per_s = tokens / o.steps / step_s;
    const ModelOptions model = ModelOptionsFromConfig(o.config);
    const double flops_per_token = TrainFlopsPerToken(model, train.seq_len());
    std::printf("layout np %d ep %d%s%s: %d micro-batches x %d x %d tokens per step, %s\n", world, o.ep,
                o.zero1 ? " zero1" : "", o.overlap_grad_sync ? "" : " blocking-grad-sync",
                o.global_micro_batches, train.micro_batch_size(), train.seq_len(),
                world > 1 ? absl::StrFormat("validated (loss %.4f)", reference_loss).c_str()
                          : "one process (its own reference)");
    std::printf("  %-13s %10s %7s %12s\n", "phase", "mean ms", "share", "slowest ms");
    auto row = [&](const char* name, int i) {
      std::printf("  %-13s %10.2f %6.1f%% %12.2f\n", name, 1e3 * mean[i], 100 * mean[i] / step_s, 1e3 * worst[i]);
    };
    for (int i = 0; i < kFirstPhase; ++i) row(kTimeNames[i], i);
    std::printf("  of compute, by model phase:\n");
    for (int p = 0; p < kPhases; ++p) row(PhaseName(static_cast<Phase>(p)), kFirstPhase + p);
    std::printf("  tokens/s %.0f (all ranks), %.2f GFLOP/s, dropped %.2f%%, peak RSS %.0f MiB (max over ranks)\n",
                tokens_per_s, tokens_per_s * flops_per_token / 1e9, 100 * mean[kDropped],
                *std::max_element(rss.begin(), rss.end()));
    if (flags->Has("json")) {
      std::vector<std::string> phases, times;
      for (int i = 0; i < kFirstPhase; ++i) {
        times.push_back(absl::StrFormat("\"%s\": %.6g", kTimeNames[i], mean[i]));
      }
      for (int p = 0; p < kPhases; ++p) {
        phases.push_back(absl::StrFormat("\"%s\": %.6g", PhaseName(static_cast<Phase>(p)), mean[kFirstPhase + p]));
      }
      std::vector<std::string> slowest_times;
      for (int i = 0; i < kFirstPhase; ++i) {
        slowest_times.push_back(absl::StrFormat("\"%s\": %.6g", kTimeNames[i], worst[i]));
      }
      std::FILE* f = std::fopen(flags->Get("json").c_str(), "w");
      if (!f) rt.Abort("cannot write " + flags->Get("json"), 1);
      std::fprintf(
          f,
          "{\"world\": %d, \"ep\": %d, \"zero1\": %s, \"threads_per_rank\": %s, \"config\": \"%s\", "
          "\"overrides\": [%s],\n \"micro_batch\": %d, \"seq_len\": %d, \"grad_accum\": %d, "
          "\"global_micro_batches\": %d, \"tokens_per_step\": %.0f, \"steps\": %d, \"warmup\": %d,\n"
          " \"num_experts\": %d, \"top_k\": %d, \"d_model\": %lld, \"expert_ffn_dim\": %lld, "
          "\"params\": %lld, \"flops_per_token\": %.6g,\n"
          " \"first_loss\": %.8g, \"validated_against\": %s,\n"
          " \"step_s\": %.6g, \"tokens_per_s\": %.6g, \"dropped_fraction\": %.6g,\n"
          " \"times_s\": {%s},\n \"slowest_rank_times_s\": {%s},\n \"phases_s\": {%s},\n"
          " \"peak_rss_mib\": %s}\n",
          world, o.ep, o.zero1 ? "true" : "false",
          std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "null", o.config_path.c_str(),
          absl::StrJoin(o.overrides, ", ", [](std::string* out, const std::string& s) {
            absl::StrAppend(out, "\"", s, "\"");
          }).c_str(),
          train.micro_batch_size(), train.seq_len(), train.grad_accum_steps(), o.global_micro_batches,
          tokens / o.steps, o.steps, o.warmup, model.router.num_experts, model.router.top_k,
          static_cast<long long>(model.d_model), static_cast<long long>(model.expert_ffn_dim),
          static_cast<long long>((*trainer)->model().NumParameters()), flops_per_token, first_loss,
          world > 1 ? absl::StrFormat("%.8g", reference_loss).c_str() : "null", step_s, tokens_per_s,
          mean[kDropped], absl::StrJoin(times, ", ").c_str(), absl::StrJoin(slowest_times, ", ").c_str(),
          absl::StrJoin(phases, ", ").c_str(), JsonNumbers(rss).c_str());
      std::fclose(f);
    }
  }
  if (!o.corpus.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(o.corpus).parent_path(), ec);
  }
  return 0;
}
