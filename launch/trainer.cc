#include "launch/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/open_source.h"
#include "launch/model_factory.h"
#include "optim/grad_clip.h"
#include "optim/schedule.h"

namespace sb {
namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainConfig& config,
                                                         const std::string& run_dir) {
  if (absl::Status s = ValidateConfig(config, /*world_size=*/1); !s.ok()) return s;
  auto t = std::unique_ptr<Trainer>(new Trainer());
  t->config_ = config;
  t->run_dir_ = run_dir;
  const auto& train = config.train();
  if (config.data().train_path().empty() && config.data().train_mixture_size() == 0) {
    return absl::InvalidArgumentError(
        "data.train_path is empty (and no data.train_mixture): set it in the config or with --set");
  }
  auto train_data = OpenTrainSource(config.data(), train.seed());
  if (!train_data.ok()) {
    return absl::Status(train_data.status().code(),
                        absl::StrCat(config.data().train_mixture_size() ? "data.train_mixture: "
                                                                        : "data.train_path: ",
                                     train_data.status().message()));
  }
  t->train_data_ = std::move(*train_data);
  if (!config.data().val_path().empty()) {
    auto val_data = OpenValSource(config.data(), train.seed() + 1);
    if (!val_data.ok()) {
      return absl::Status(val_data.status().code(),
                          absl::StrCat("data.val_path: ", val_data.status().message()));
    }
    t->val_data_ = std::move(*val_data);
  }
  for (const BatchSource* source : {t->train_data_.get(), t->val_data_.get()}) {
    if (source && source->vocab_size() > config.model().vocab_size()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "model.vocab_size = %d is smaller than the data's vocabulary (%d tokens): %s",
          config.model().vocab_size(), source->vocab_size(), source->Describe()));
    }
  }
  t->model_options_ = ModelOptionsFromConfig(config);
  t->model_ = std::make_unique<Model>(t->model_options_, nullptr, DType::kF32, Device::kCpu);
  t->model_->InitWeights(train.seed());
  t->optimizer_ = MakeOptimizer(config.optimizer(), t->model_->Parameters());
  t->flops_per_token_ = TrainFlopsPerToken(t->model_options_, train.seq_len());

  if (!run_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create run_dir ", run_dir, ": ", ec.message()));
  }
  return t;
}

// Written by Run, not Create: a resume that fails must leave the run
// directory's files as they were.
absl::Status Trainer::OpenRunFiles() {
  if (run_dir_.empty()) return absl::OkStatus();
  if (!resumed_ && HasCheckpoint(run_dir_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        CheckpointsDir(run_dir_), "/latest exists: pass --resume to continue that run, or choose "
        "another --run_dir"));
  }
  std::ofstream out(run_dir_ + "/config.textproto");
  out << ResolvedConfigText(config_);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", run_dir_, "/config.textproto"));
  const std::string metrics = run_dir_ + "/metrics.jsonl";
  if (resumed_) {
    if (absl::Status s = TrimMetricsLog(metrics, start_step_); !s.ok()) return s;
  }
  return metrics_.Open(metrics, /*append=*/resumed_);
}

absl::StatusOr<StepMetrics> Trainer::TrainStep(int64_t step) {
  const auto& train = config_.train();
  const int world = 1, rank = 0;
  const int accum = train.grad_accum_steps();
  const int64_t micro_batches = int64_t{world} * accum;
  StepMetrics m;
  model_->ZeroGrad();
  for (int a = 0; a < accum; ++a) {
    // Global micro-batch j reads the same samples whatever the layout.
    const int64_t j = int64_t{a} * world + rank;
    if (absl::Status s = train_data_->Read(FirstMicroBatch(step) + j, train.micro_batch_size(),
                                           train.seq_len(), &batch_);
        !s.ok()) {
      return s;
    }
    StepContext ctx{true, train.seed(), step, j};
    const ForwardResult r = model_->Forward(batch_.inputs, batch_.targets, ctx);
    model_->Backward(1.0 / micro_batches);
    m.loss += r.loss / accum;
    m.aux_loss += r.aux_loss / accum;
    m.z_loss += r.z_loss / accum;
    m.dropped_fraction += r.dropped_fraction / accum;
    m.tokens += r.tokens;
    double entropy = 0;
    int layers = 0;
    for (MoeLayer* moe : model_->MoeLayers()) {
      entropy += moe->stats().entropy;
      ++layers;
    }
    if (layers) m.router_entropy += entropy / layers / accum;
  }
  if (gradient_hook_) gradient_hook_(step, *model_);
  const std::vector<Parameter*> params = model_->Parameters();
  m.grad_norm = std::sqrt(GradSquaredNorm(params));
  m.lr = LearningRate(config_.schedule(), config_.optimizer().lr(), step, train.steps());
  if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) {
    m.skipped = true;  // Run logs it and counts the streak
    model_->ZeroGrad();
    return m;
  }
  ClipGradients(params, m.grad_norm, config_.optimizer().grad_clip());
  optimizer_->Step(m.lr);
  return m;
}

absl::Status Trainer::HandleSkippedStep(int64_t step, const StepMetrics& m) {
  ++nonfinite_streak_;
  ++skipped_steps_;
  const int limit = config_.checkpoint().max_nonfinite_steps();
  if (topology_.rank == 0) {
    std::printf("step %5d/%d | non-finite loss %g or gradient norm %g: update skipped (%d in a "
                "row, limit %d)\n",
                static_cast<int>(step + 1), static_cast<int>(config_.train().steps()), m.loss,
                m.grad_norm, nonfinite_streak_, limit);
    std::fflush(stdout);
  }
  JsonRecord rec;
  rec.Add("step", step + 1).Add("loss", m.loss).Add("grad_norm", m.grad_norm).Add("lr", m.lr);
  rec.Add("skipped", int64_t{1});
  metrics_.Write(rec);
  if (nonfinite_streak_ < limit) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat(
      "stopping at step %d: %d steps in a row had a non-finite loss or gradient norm "
      "(checkpoint.max_nonfinite_steps = %d); lower optimizer.lr, lengthen "
      "schedule.warmup_steps or check the data, then resume from the last checkpoint",
      step + 1, nonfinite_streak_, limit));
}

absl::StatusOr<double> Trainer::Evaluate() {
  if (!val_data_) return absl::FailedPreconditionError("no validation data (data.val_path)");
  const auto& train = config_.train();
  double sum = 0;
  int64_t tokens = 0;
  for (int i = 0; i < train.eval_batches(); ++i) {
    if (absl::Status s = val_data_->Read(i, train.micro_batch_size(), train.seq_len(), &batch_);
        !s.ok()) {
      return s;
    }
    StepContext ctx{false, train.seed(), 0, i};
    const ForwardResult r = model_->Forward(batch_.inputs, batch_.targets, ctx);
    sum += r.loss * r.tokens;
    tokens += r.tokens;
  }
  return tokens ? sum / tokens : 0.0;
}

void Trainer::LogStep(int64_t step, const StepMetrics& m, double val_loss, double elapsed,
                      double interval_s, int64_t interval_tokens) {
  const int64_t steps = config_.train().steps();
  const double tokens_per_s = interval_s > 0 ? interval_tokens / interval_s : 0.0;
  const double eta =
      (step + 1) < steps ? elapsed / (step + 1 - start_step_) * (steps - step - 1) : 0.0;
  std::string line = absl::StrFormat(
      "step %5d/%d | loss %.4f | aux %.4f | z %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | "
      "%.2f GFLOP/s | drop %.2f%% | eta %s",
      step + 1, steps, m.loss, m.aux_loss, m.z_loss, m.lr, m.grad_norm, tokens_per_s,
      tokens_per_s * flops_per_token_ / 1e9, 100.0 * m.dropped_fraction, FormatDuration(eta));
  if (std::isfinite(val_loss)) absl::StrAppend(&line, absl::StrFormat(" | val %.4f", val_loss));
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  JsonRecord rec;
  rec.Add("step", step + 1).Add("loss", m.loss).Add("aux_loss", m.aux_loss).Add("z_loss", m.z_loss);
  rec.Add("lr", m.lr).Add("grad_norm", m.grad_norm).Add("tokens_per_s", tokens_per_s);
  rec.Add("dropped_frac", m.dropped_fraction).Add("router_entropy", m.router_entropy);
  rec.Add("elapsed_s", elapsed);
  if (std::isfinite(val_loss)) rec.Add("val_loss", val_loss);
  if (config_.logging().expert_counts()) {
    const auto layers = model_->MoeLayers();
    for (size_t i = 0; i < layers.size(); ++i) {
      rec.Add(absl::StrCat("tokens_per_expert_moe", i), layers[i]->stats().routed);
    }
  }
  metrics_.Write(rec);
}

absl::Status Trainer::Run() {
  const auto& train = config_.train();
  if (absl::Status s = OpenRunFiles(); !s.ok()) return s;
  std::printf("model: %.2fM parameters (%.2fM active per token), %d MoE of %d layers, %d experts top-%d\n",
              model_->NumParameters() / 1e6,
              flops_per_token_ / 6e6,
              static_cast<int>(model_->MoeLayers().size()), model_options_.num_layers,
              model_options_.router.num_experts, model_options_.router.top_k);
  std::printf("data:  %s\n", train_data_->Describe().c_str());
  const double unigram = train_data_->UnigramEntropy();
  if (std::isfinite(unigram)) {
    std::printf("data:  unigram entropy %.3f nats/token (the loss of a model that ignores context)\n",
                unigram);
  }
  std::fflush(stdout);
  const double start = Now();
  double interval_start = start;
  int64_t interval_tokens = 0;
  for (int64_t step = start_step_; step < train.steps(); ++step) {
    auto m = TrainStep(step);
    if (!m.ok()) return m.status();
    interval_tokens += m->tokens;
    tokens_seen_ += m->tokens;
    if (step_observer_) step_observer_(step, *m);
    if (m->skipped) {
      if (absl::Status s = HandleSkippedStep(step, *m); !s.ok()) return s;
    } else {
      nonfinite_streak_ = 0;
      // Losses are averaged over the steps since the last log line.
      interval_.loss += m->loss;
      interval_.aux_loss += m->aux_loss;
      interval_.z_loss += m->z_loss;
      interval_.dropped_fraction += m->dropped_fraction;
      interval_.router_entropy += m->router_entropy;
      ++interval_steps_;
    }
    const bool last = step + 1 == train.steps();
    const bool log = (step + 1) % train.log_every() == 0 || last;
    const bool eval = val_data_ && ((train.eval_every() > 0 && (step + 1) % train.eval_every() == 0) || last);
    double val_loss = NAN;
    if (eval) {
      auto v = Evaluate();
      if (!v.ok()) return v.status();
      val_loss = *v;
    }
    if ((log && interval_steps_ > 0) || eval) {
      // NaN (null in metrics.jsonl) when every step since the last line was skipped.
      const double n = interval_steps_ > 0 ? interval_steps_ : NAN;
      StepMetrics mean = *m;
      mean.loss = interval_.loss / n;
      mean.aux_loss = interval_.aux_loss / n;
      mean.z_loss = interval_.z_loss / n;
      mean.dropped_fraction = interval_.dropped_fraction / n;
      mean.router_entropy = interval_.router_entropy / n;
      const double now = Now();
      LogStep(step, mean, val_loss, now - start, now - interval_start, interval_tokens);
      last_loss_ = mean.loss;
      interval_ = StepMetrics();
      interval_steps_ = 0;
      interval_start = Now();  // excludes evaluation time from tokens/s
      interval_tokens = 0;
    }
    const int every = config_.checkpoint().every_steps();
    if (!run_dir_.empty() && (last || (every > 0 && (step + 1) % every == 0))) {
      if (absl::Status s = WriteCheckpoint(step + 1); !s.ok()) return s;
    }
  }
  std::printf("done: %d steps in %s\n", static_cast<int>(train.steps() - start_step_),
              FormatDuration(Now() - start).c_str());
  if (std::isfinite(unigram) && std::isfinite(last_loss_)) {
    std::printf("final training loss %.3f is %s the unigram entropy %.3f\n", last_loss_,
                last_loss_ < unigram ? "below" : "NOT below", unigram);
  }
  return absl::OkStatus();
}

}  // namespace sb
