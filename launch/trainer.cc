#include "launch/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/open_source.h"
#include "data/shard_format.h"
#include "moe/io/file_util.h"
#include "launch/model_factory.h"
#include "launch/stop_signals.h"
#include "moe/core/device_memory.h"
#include "optim/grad_clip.h"
#include "optim/schedule.h"
#include "optim/zero1.h"

namespace sb {
namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ZeRO-1's view of a communicator (optim/ does not depend on parallel/).
ReplicaGroup ReplicasOf(Communicator& comm) {
  ReplicaGroup g;
  g.size = comm.size();
  g.rank = comm.rank();
  g.all_gather_v = [&comm](const Tensor& send, const Tensor& recv,
                           const std::vector<int64_t>& counts) {
    comm.AllGatherV(send, recv, counts);
  };
  return g;
}

constexpr char kAllRanksPayload[] = "switchboard/error-on-all-ranks";
constexpr char kInputPayload[] = "switchboard/input-error";
constexpr char kOwnCausePayload[] = "switchboard/own-cause";

absl::Status OnAllRanks(absl::Status status) {
  status.SetPayload(kAllRanksPayload, absl::Cord("1"));
  return status;
}

absl::Status InputError(absl::Status status) {
  status.SetPayload(kInputPayload, absl::Cord("1"));
  return status;
}

// The AND of `status.ok()` over the world: every rank returns an error
// marked as on all ranks, its own (also marked IsOwnCauseOnAllRanks: the
// ranks that hit it print it) or "another rank failed to <what>". One
// all-reduce.
absl::Status AgreeOnAllRanks(Communicator& world, absl::Status status, const char* what) {
  const std::vector<double> failed = AllReduceSum(world, {status.ok() ? 0.0 : 1.0});
  if (failed[0] == 0) return absl::OkStatus();
  if (status.ok()) {
    status = absl::AbortedError(absl::StrCat("another rank failed to ", what, " (see its error)"));
  } else {
    status.SetPayload(kOwnCausePayload, absl::Cord("1"));
  }
  return OnAllRanks(std::move(status));
}

}  // namespace

bool IsErrorOnAllRanks(const absl::Status& status) {
  return status.GetPayload(kAllRanksPayload).has_value();
}

bool IsInputError(const absl::Status& status) {
  return status.GetPayload(kInputPayload).has_value();
}

bool IsOwnCauseOnAllRanks(const absl::Status& status) {
  return status.GetPayload(kOwnCausePayload).has_value();
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainConfig& config,
                                                         const std::string& run_dir,
                                                         const TrainerContext& context) {
  auto t = std::unique_ptr<Trainer>(new Trainer());
  if (context.grid) {
    t->grid_ = context.grid;
  } else {
    t->self_world_ = std::make_unique<SelfCommunicator>("world");
    auto grid = ProcessGrid::Create(*t->self_world_, 1);
    if (!grid.ok()) return grid.status();
    t->own_grid_ = std::move(*grid);
    t->grid_ = t->own_grid_.get();
  }
  if (absl::Status s = ValidateConfig(config, t->grid_->world_size()); !s.ok()) return s;
  if (config.parallel().expert_parallel_size() != t->grid_->ep_size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "parallel.expert_parallel_size = %d but the process grid has ep = %d",
        config.parallel().expert_parallel_size(), t->grid_->ep_size()));
  }
  t->config_ = config;
  t->run_dir_ = run_dir;
  const auto& train = config.train();
  if (train.device() == switchboard::TrainLoopConfig::CUDA && CudaDeviceCount() == 0) {
    return absl::FailedPreconditionError(
        "train.device = CUDA but no CUDA device is visible (no GPU, no driver, or "
        "CUDA_VISIBLE_DEVICES hides them); use train.device=CPU");
  }
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
  if (absl::Status s = CheckDataFitsRun(config, *t->train_data_, t->val_data_.get()); !s.ok()) {
    return s;
  }
  t->model_options_ = ModelOptionsFromConfig(config);
  ProcessGrid& grid = *t->grid_;
  // Where the model runs and in which number formats (docs/cuda.md): on a
  // GPU, bf16 compute copies of f32 master weights unless train.precision
  // asks for f32 throughout.
  const bool on_gpu = train.device() == switchboard::TrainLoopConfig::CUDA;
  const bool bf16 = on_gpu && train.precision() != switchboard::TrainLoopConfig::FP32;
  if (bf16 && context.dtype != DType::kF32) {
    return absl::InvalidArgumentError("bf16 mixed precision keeps f32 master weights");
  }
  // Before any allocation: a run that cannot fit is refused with the estimate.
  MemoryPlacement placement;
  placement.device = on_gpu ? Device::kCuda : Device::kCpu;
  placement.param_dtype = context.dtype;
  placement.activation_dtype = bf16 ? DType::kBF16 : context.dtype;
  t->memory_estimate_ = EstimateTrainingMemory(config, grid.world_size(), placement);
  if (context.check_host_memory) {
    std::string source;
    absl::StatusOr<double> available = HostMemoryAvailable(&source);
    if (available.ok()) {
      if (absl::Status s = CheckHostMemory(t->memory_estimate_, context.ranks_on_host, *available,
                                           source);
          !s.ok()) {
        return s;
      }
    }
    if (const int64_t free_bytes = on_gpu ? CudaFreeMemory() : -1; free_bytes >= 0) {
      if (absl::Status s = CheckDeviceMemory(t->memory_estimate_, static_cast<double>(free_bytes));
          !s.ok()) {
        return s;
      }
    }
  }
  if (grid.ep_size() > 1) {
    t->dispatcher_ = std::make_unique<AllToAllDispatcher>(grid.dispatch_group(),
                                                          t->model_options_.router.num_experts);
  }
  // Weights are keyed by (seed, name, global expert id): every layout
  // initialises the same model, each rank its own expert shard.
  t->model_ = std::make_unique<Model>(t->model_options_, t->dispatcher_.get(), context.dtype,
                                      on_gpu ? Device::kCuda : Device::kCpu,
                                      bf16 ? DType::kBF16 : context.dtype);
  t->model_->InitWeights(train.seed());
  const std::vector<Parameter*> params = t->model_->Parameters();
  t->params_ = SplitByReplication(params);
  const auto bucket_bytes = static_cast<int64_t>(config.parallel().grad_bucket_mb() * (1 << 20));
  t->grad_sync_ = std::make_unique<GradSync>(params, grid, std::max<int64_t>(bucket_bytes, 1));
  // Buckets start all-reducing as the last micro-batch's backward finishes them.
  GradSync* grad_sync = t->grad_sync_.get();
  t->model_->set_backward_observer(
      [grad_sync](const std::vector<Parameter*>& finished) { grad_sync->GradientsReady(finished); });
  if (config.parallel().zero1()) {
    t->optimizer_ = std::make_unique<Zero1Optimizer>(
        config.optimizer(), params, ReplicasOf(grid.world()), ReplicasOf(grid.edp_group()),
        std::max<int64_t>(bucket_bytes, 1));
  } else {
    t->optimizer_ = MakeOptimizer(config.optimizer(), params);
  }
  t->flops_per_token_ = TrainFlopsPerToken(t->model_options_, train.seq_len());

  // Checkpoints meet at a collective AND over the world (launch/checkpoint.h).
  CheckpointTopology& topo = t->topology_;
  topo.rank = grid.rank();
  topo.world_size = grid.world_size();
  topo.ep_rank = grid.ep_rank();
  topo.ep_size = grid.ep_size();
  topo.dp_rank = grid.dp_rank();
  topo.optimizer_sharded = config.parallel().zero1();
  if (grid.world_size() > 1) {
    Communicator* world = &grid.world();
    topo.all_ok = [world](bool ok) { return AllReduceSum(*world, {ok ? 0.0 : 1.0})[0] == 0.0; };
  }
  return t;
}

// Checked by every rank before the first step; nothing is written.
absl::Status Trainer::CheckRunDir() const {
  if (resumed_) return absl::OkStatus();
  absl::Status s = CheckFreshRunDir(run_dir_, overwrite_run_files_);
  return s.ok() ? s : OnAllRanks(InputError(s));
}

absl::StatusOr<StepMetrics> Trainer::TrainStep(int64_t step) {
  const auto& train = config_.train();
  const int world = grid_->world_size(), rank = grid_->rank();
  const int accum = train.grad_accum_steps();
  const int64_t micro_batches = int64_t{world} * accum;
  const double start = Now();
  if (dispatcher_) dispatcher_->ResetStats();
  StepMetrics m;
  model_->ZeroGrad();
  std::vector<double> load;  // routed choices per expert of the step (Model::RoutedCounts layout)
  // Every micro-batch is read before the first forward pass and the ranks
  // agree, so that bad data on one rank stops all of them at this step
  // instead of leaving the others waiting in the dispatch.
  step_batches_.resize(static_cast<size_t>(accum));
  absl::Status read;
  for (int a = 0; a < accum && read.ok(); ++a) {
    // Global micro-batch j reads the same samples whatever the layout.
    const int64_t j = int64_t{a} * world + rank;
    read = train_data_->Read(FirstMicroBatch(step) + j, train.micro_batch_size(), train.seq_len(),
                             &step_batches_[static_cast<size_t>(a)]);
    if (!read.ok()) {
      read = absl::Status(read.code(), absl::StrCat("step ", step + 1, ": training data (",
                                                    config_.data().train_mixture_size()
                                                        ? "data.train_mixture"
                                                        : "data.train_path",
                                                    "): ", read.message()));
    }
  }
  if (absl::Status s = AgreeOnAllRanks(grid_->world(), read, "read its training data"); !s.ok()) {
    return InputError(s);
  }
  for (int a = 0; a < accum; ++a) {
    const int64_t j = int64_t{a} * world + rank;
    const Batch& batch = step_batches_[static_cast<size_t>(a)];
    StepContext ctx{true, train.seed(), step, j};
    const ForwardResult r = model_->Forward(batch.inputs, batch.targets, ctx);
    if (a == accum - 1 && config_.parallel().overlap_grad_sync()) grad_sync_->BeginOverlap();
    // The step's loss is the mean over all world * accum micro-batches.
    model_->Backward(1.0 / micro_batches);
    m.loss += r.loss / accum;
    m.aux_loss += r.aux_loss / accum;
    m.z_loss += r.z_loss / accum;
    m.dropped_fraction += r.dropped_fraction / accum;
    m.tokens += r.tokens;
    const std::vector<double> counts = model_->RoutedCounts();
    load.resize(counts.size(), 0.0);
    for (size_t i = 0; i < counts.size(); ++i) load[i] += counts[i];
    double entropy = 0;
    int layers = 0;
    for (MoeLayer* moe : model_->MoeLayers()) {
      entropy += moe->stats().entropy;
      ++layers;
    }
    if (layers) m.router_entropy += entropy / layers / accum;
  }
  const double backward_done = Now();
  if (dispatcher_) {
    const DispatcherStats& d = dispatcher_->stats();
    m.times.dispatch = d.plan_s + d.dispatch_s;
    m.times.combine = d.combine_s;
  }
  m.times.compute = backward_done - start - m.times.dispatch - m.times.combine;

  grad_sync_->Sync();
  if (gradient_hook_) gradient_hook_(step, *model_);
  const double synced = Now();
  m.times.grad_sync = synced - backward_done;
  // Every rank ran `accum` equal micro-batches: the world mean is the mean of
  // the rank means. The step's expert load rides along in the same all-reduce.
  std::vector<double> local = {m.loss, m.aux_loss, m.z_loss, m.dropped_fraction,
                               m.router_entropy, static_cast<double>(m.tokens)};
  const size_t num_metrics = local.size();
  local.insert(local.end(), load.begin(), load.end());
  const std::vector<double> sums = AllReduceSum(grid_->world(), local);
  load.assign(sums.begin() + num_metrics, sums.end());
  m.load_imbalance = MeanLoadImbalance(load, model_options_.router.num_experts);
  m.loss = sums[0] / world;
  m.aux_loss = sums[1] / world;
  m.z_loss = sums[2] / world;
  m.dropped_fraction = sums[3] / world;
  m.router_entropy = sums[4] / world;
  m.tokens = static_cast<int64_t>(sums[5]);
  m.grad_norm = std::sqrt(GlobalGradSquaredNorm(GradSquaredNorm(params_.replicated),
                                                GradSquaredNorm(params_.expert),
                                                grid_->ep_group()));
  m.lr = LearningRate(config_.schedule(), config_.optimizer().lr(), step, train.steps());
  // Loss and norm are identical on every rank, so all ranks skip together.
  if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) {
    m.skipped = true;  // Run logs it and counts the streak
    model_->ZeroGrad();
    m.times.total = Now() - start;
    return m;
  }
  const std::vector<Parameter*> params = model_->Parameters();
  ClipGradients(params, m.grad_norm, config_.optimizer().grad_clip());
  optimizer_->Step(m.lr);
  model_->RefreshComputeCopies();  // bf16 copies of the new master weights
  // Auxiliary-loss-free balancing: the biases follow the step's global load.
  model_->UpdateSelectionBiases(load);
  m.selection_bias_abs_max = SelectionBiasAbsMax(*model_);
  const double end = Now();
  m.times.optimizer = end - synced;
  m.times.total = end - start;
  return m;
}

absl::Status Trainer::HandleSkippedStep(int64_t step, const StepMetrics& m) {
  if (nonfinite_streak_ == 0) streak_start_step_ = step;
  ++nonfinite_streak_;
  ++skipped_steps_;
  const int limit = config_.checkpoint().max_nonfinite_steps();
  if (chief()) {
    std::printf("step %5d/%d | non-finite loss %g or gradient norm %g: update skipped (%d in a "
                "row, limit %d)\n",
                static_cast<int>(step + 1), static_cast<int>(config_.train().steps()), m.loss,
                m.grad_norm, nonfinite_streak_, limit);
    std::fflush(stdout);
    JsonRecord rec;
    rec.Add("step", step + 1).Add("loss", m.loss).Add("grad_norm", m.grad_norm).Add("lr", m.lr);
    rec.Add("skipped", int64_t{1});
    NoteWrite(metrics_.Write(rec));
  }
  if (nonfinite_streak_ < limit) return absl::OkStatus();
  // Every rank sees the same reduced loss and norm, so every rank stops here.
  return OnAllRanks(absl::InternalError(absl::StrFormat(
      "stopping at step %d: %d steps in a row had a non-finite loss or gradient norm "
      "(checkpoint.max_nonfinite_steps = %d); lower optimizer.lr, lengthen "
      "schedule.warmup_steps or check the data, then %s",
      step + 1, nonfinite_streak_, limit, DivergenceAdvice())));
}

absl::StatusOr<double> Trainer::Evaluate() {
  if (!val_data_) return absl::FailedPreconditionError("no validation data (data.val_path)");
  const auto& train = config_.train();
  const int world = grid_->world_size(), rank = grid_->rank();
  // Batch i goes to rank i % world. Every rank runs the same number of
  // forward passes (expert parallelism needs all EP ranks in each one); a
  // rank past the last batch runs one that is not counted.
  const int passes = (train.eval_batches() + world - 1) / world;
  // All batches are read first and the ranks agree (see TrainStep).
  eval_batches_.resize(static_cast<size_t>(passes));
  absl::Status read;
  for (int n = 0; n < passes && read.ok(); ++n) {
    read = val_data_->Read(n * world + rank, train.micro_batch_size(), train.seq_len(),
                           &eval_batches_[static_cast<size_t>(n)]);
    if (!read.ok()) {
      read = absl::Status(read.code(), absl::StrCat("evaluation: validation data (data.val_path): ",
                                                    read.message()));
    }
  }
  if (absl::Status s = AgreeOnAllRanks(grid_->world(), read, "read its validation data"); !s.ok()) {
    return InputError(s);
  }
  double sum = 0, tokens = 0;
  for (int n = 0; n < passes; ++n) {
    const int i = n * world + rank;
    const Batch& batch = eval_batches_[static_cast<size_t>(n)];
    StepContext ctx{false, train.seed(), 0, i};
    const ForwardResult r = model_->Forward(batch.inputs, batch.targets, ctx);
    if (i < train.eval_batches()) {
      sum += r.loss * r.tokens;
      tokens += static_cast<double>(r.tokens);
    }
  }
  const std::vector<double> totals = AllReduceSum(grid_->world(), {sum, tokens});
  return totals[1] > 0 ? totals[0] / totals[1] : 0.0;
}

std::vector<std::vector<int64_t>> Trainer::ExpertCounts() {
  std::vector<std::vector<int64_t>> counts;
  if (!config_.logging().expert_counts() && !(config_.logging().tensorboard() && !run_dir_.empty())) {
    return counts;
  }
  std::vector<double> flat;
  for (MoeLayer* moe : model_->MoeLayers())
    for (int64_t c : moe->stats().routed) flat.push_back(static_cast<double>(c));
  flat = AllReduceSum(grid_->world(), flat);
  size_t i = 0;
  for (MoeLayer* moe : model_->MoeLayers()) {
    counts.emplace_back();
    for (size_t e = 0; e < moe->stats().routed.size(); ++e)
      counts.back().push_back(static_cast<int64_t>(flat[i++]));
  }
  return counts;
}

void Trainer::LogStep(int64_t step, const StepMetrics& m, double val_loss, double elapsed,
                      double interval_s, int64_t interval_tokens,
                      const std::vector<std::vector<int64_t>>& expert_counts) {
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
  // logging.expert_counts: one line per MoE block with the routed choices
  // per expert (the step's last micro-batch, summed over ranks). The counts
  // are also gathered for TensorBoard, which does not print them.
  if (config_.logging().expert_counts()) std::printf("%s", FormatExpertCounts(expert_counts).c_str());
  std::fflush(stdout);
  const double model_flops = tokens_per_s * flops_per_token_;
  JsonRecord rec;
  rec.Add("step", step + 1).Add("loss", m.loss).Add("aux_loss", m.aux_loss).Add("z_loss", m.z_loss);
  rec.Add("lr", m.lr).Add("grad_norm", m.grad_norm).Add("tokens_per_s", tokens_per_s);
  rec.Add("dropped_frac", m.dropped_fraction).Add("router_entropy", m.router_entropy);
  rec.Add("load_imbalance", m.load_imbalance);
  if (!model_->Buffers().empty()) rec.Add("selection_bias_abs_max", m.selection_bias_abs_max);
  rec.Add("mfu", model_flops / peak_flops_);
  rec.Add("elapsed_s", elapsed);
  // Mean step time by phase on rank 0 (docs/parallel.md, "Step-time breakdown").
  rec.Add("step_s", m.times.total).Add("compute_s", m.times.compute);
  rec.Add("dispatch_s", m.times.dispatch).Add("combine_s", m.times.combine);
  rec.Add("grad_sync_s", m.times.grad_sync).Add("optimizer_s", m.times.optimizer);
  if (std::isfinite(val_loss)) rec.Add("val_loss", val_loss);
  for (size_t i = 0; config_.logging().expert_counts() && i < expert_counts.size(); ++i) {
    rec.Add(absl::StrCat("tokens_per_expert_moe", i), expert_counts[i]);
  }
  NoteWrite(metrics_.Write(rec));
  if (tensorboard_) {
    const absl::Status s = tensorboard_->Write(step + 1, m, tokens_per_s, model_flops,
                                               model_flops / peak_flops_, val_loss, expert_counts);
    if (!s.ok()) {
      std::fprintf(stderr, "warning: TensorBoard logging stopped: %s\n", std::string(s.message()).c_str());
      tensorboard_.reset();
    }
  }
}

absl::Status Trainer::Run() {
  const auto& train = config_.train();
  if (absl::Status s = CheckRunDir(); !s.ok()) return s;
  // From here on a stop signal ends the run after the current step, saved.
  StopSignals stop_signals(/*announce=*/chief());
  if (!run_dir_.empty()) {  // MFU is logged only into run-dir files
    const Parameter& p = *model_->Parameters().front();
    peak_flops_ = WorldPeakFlops(config_.logging(), p.compute().dtype(), p.value.device(),
                                 grid_->world());
  }
  const double unigram = train_data_->UnigramEntropy();
  if (chief()) {
    const int num_moe = static_cast<int>(model_->MoeLayers().size());
    const std::string routing =
        num_moe ? absl::StrFormat("%d MoE of %d layers, %d experts top-%d", num_moe,
                                  model_options_.num_layers, model_options_.router.num_experts,
                                  model_options_.router.top_k)
                : absl::StrFormat("dense, %d layers", model_options_.num_layers);
    std::printf("model: %.2fM parameters (%.2fM active per token), %s\n", model_->NumParameters() / 1e6,
                ActiveParametersPerToken(model_options_) / 1e6, routing.c_str());
    std::printf("memory: about %s (estimate)\n", memory_estimate_.Describe().c_str());
    std::printf("data:  %s\n", train_data_->Describe().c_str());
    if (std::isfinite(peak_flops_)) {
      std::printf("peak:  %.1f GFLOP/s for MFU (%s)\n", peak_flops_ / 1e9,
                  config_.logging().peak_tflops() > 0 ? "logging.peak_tflops x ranks"
                                                      : "measured: 512^3 GEMM on every rank, summed");
    }
    if (std::isfinite(unigram)) {
      std::printf("data:  unigram entropy %.3f nats/token (the loss of a model that ignores context)\n",
                  unigram);
    }
    if (grid_->world_size() > 1) {
      std::printf("ranks: %d = %d data-parallel x %d expert-parallel (%d experts per rank)%s\n",
                  grid_->world_size(), grid_->dp_size(), grid_->ep_size(),
                  model_options_.router.num_experts / grid_->ep_size(),
                  config_.parallel().zero1() ? ", ZeRO-1 optimizer state" : "");
      if (grid_->nodes_per_ep_group() > 1) {
        std::printf("ranks: hierarchical all-to-all, each expert-parallel group = %d nodes x %d\n",
                    grid_->nodes_per_ep_group(), grid_->ep_size() / grid_->nodes_per_ep_group());
      }
    }
    std::fflush(stdout);
  }
  const double start = Now();
  double interval_start = start;
  int64_t interval_tokens = 0;
  for (int64_t step = start_step_; step < train.steps(); ++step) {
    auto m = TrainStep(step);
    if (!m.ok()) return SaveBeforeExit(step, m.status());
    if (!run_files_open_) NoteWrite(OpenRunFiles());
    interval_tokens += m->tokens;
    tokens_seen_ += m->tokens;
    if (step_observer_) step_observer_(step, *m);
    if (m->skipped) {
      if (absl::Status s = HandleSkippedStep(step, *m); !s.ok()) return s;
    } else {
      nonfinite_streak_ = 0;
      // Losses and times are averaged over the steps since the last log line.
      interval_.loss += m->loss;
      interval_.aux_loss += m->aux_loss;
      interval_.z_loss += m->z_loss;
      interval_.dropped_fraction += m->dropped_fraction;
      interval_.router_entropy += m->router_entropy;
      interval_.load_imbalance += m->load_imbalance;
      interval_.times.total += m->times.total;
      interval_.times.compute += m->times.compute;
      interval_.times.dispatch += m->times.dispatch;
      interval_.times.combine += m->times.combine;
      interval_.times.grad_sync += m->times.grad_sync;
      interval_.times.optimizer += m->times.optimizer;
      ++interval_steps_;
    }
    const bool last = step + 1 == train.steps();
    const bool log = (step + 1) % train.log_every() == 0 || last;
    const bool eval = val_data_ && ((train.eval_every() > 0 && (step + 1) % train.eval_every() == 0) || last);
    double val_loss = NAN;
    if (eval) {
      auto v = Evaluate();
      if (!v.ok()) return SaveBeforeExit(step + 1, v.status());
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
      mean.load_imbalance = interval_.load_imbalance / n;
      mean.times = interval_.times;
      for (double* t : {&mean.times.total, &mean.times.compute, &mean.times.dispatch,
                        &mean.times.combine, &mean.times.grad_sync, &mean.times.optimizer}) {
        *t /= n;
      }
      const std::vector<std::vector<int64_t>> counts = ExpertCounts();  // collective
      const double now = Now();
      if (chief()) {
        LogStep(step, mean, val_loss, now - start, now - interval_start, interval_tokens, counts);
      }
      last_loss_ = mean.loss;
      interval_ = StepMetrics();
      interval_steps_ = 0;
      interval_start = Now();  // excludes evaluation time from tokens/s
      interval_tokens = 0;
    }
    const int every = config_.checkpoint().every_steps();
    if (!run_dir_.empty() && (last || (every > 0 && (step + 1) % every == 0))) {
      const std::string blocker = SaveBlocker();
      if (blocker.empty()) {
        if (absl::Status s = WriteCheckpoint(step + 1); !s.ok()) return s;
      } else if (chief()) {
        std::printf("checkpoint at step %d skipped: %s\n", static_cast<int>(step + 1),
                    blocker.c_str());
        std::fflush(stdout);
      }
    }
    const StopPoll poll = PollStop();  // collective: every rank decides alike
    if (poll.write_failed) {
      return SaveBeforeExit(
          step + 1, OnAllRanks(chief() ? run_files_error_
                                       : absl::InternalError("rank 0 failed to write the run "
                                                             "directory (see its error)")));
    }
    if (poll.signal && !last) {
      stopped_by_signal_ = StopSignals::received() != 0 ? StopSignals::received() : -1;
      return SaveBeforeExit(step + 1, absl::OkStatus());
    }
  }
  if (chief()) {
    std::printf("done: %d steps in %s\n", static_cast<int>(train.steps() - start_step_),
                FormatDuration(Now() - start).c_str());
    if (std::isfinite(unigram) && std::isfinite(last_loss_)) {
      std::printf("final training loss %.3f is %s the unigram entropy %.3f\n", last_loss_,
                  last_loss_ < unigram ? "below" : "NOT below", unigram);
    }
  }
  return absl::OkStatus();
}

}  // namespace sb
