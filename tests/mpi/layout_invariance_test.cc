// Layout invariance of training (DESIGN.md "Parallelism"): after K
// optimizer steps, every data x expert layout gives the losses, aux and z
// values, gradient norms and parameters of ONE process that accumulates
// gradients over the same micro-batches (world * grad_accum = 4 micro-batches
// per step everywhere), with capacity dropping active and dropless routing,
// router jitter on and clipping active; evaluation spread over the ranks
// gives the one-process validation loss. Expert parameters are compared by
// global expert id (this rank's shard against the reference's rows).
//
// One mpirun job runs every layout that fits its world: the ranks split into
// sub-worlds of w ranks and each builds a (w, ep) process grid; every rank
// also trains the one-process reference itself. Runs in f64 so that the
// tolerance can be tight (1e-9 of the largest AdamW move): a wrong gradient
// scale, a missing expert-gradient sum or a misrouted row is far outside it.
// ZeRO-1 is checked in f32 (the training dtype), bitwise against the
// unsharded optimizer on the same layout. Layouts include a hierarchical
// all-to-all (np 4, ep 4 as 2 "nodes" x 2) and the blocking gradient sync
// (the others overlap it with backward). Run by ctest through mpirun.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "launch/trainer.h"
#include "optim/test_util.h"
#include "optim/zero1.h"
#include "parallel/backend.h"
#include "tests/testing/mpi_test_main.h"

namespace sb {
namespace {

using optim_test::AllClose;

constexpr int kSteps = 3;
constexpr int kMicroBatches = 4;  // per step, in every layout
constexpr double kLr = 1e-2;
constexpr double kEps64 = 2.220446049250313e-16;

Runtime& Rt() { return testing::TestRuntime(); }

std::filesystem::path CorpusDir() {
  return std::filesystem::temp_directory_path() / ("sb_layout_test_" + std::to_string(getpid()));
}

// Removes this process's corpus after the last test.
class CorpusCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(CorpusDir(), ec);
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new CorpusCleanup);

// A few KB of word salad, identical on every rank, in a per-process file.
std::string WriteCorpus() {
  static const std::string path = [] {
    const auto dir = CorpusDir();
    std::filesystem::create_directories(dir);
    const std::string file = (dir / "corpus.txt").string();
    const char* words[] = {"expert", "token", "router", "the", "of", "gate", "rank",
                           "all", "to", "mixture", "layer", "a", "capacity", "loss"};
    std::ofstream out(file);
    uint64_t x = 12345;
    for (int i = 0; i < 3000; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      out << words[(x >> 33) % 14] << ((x >> 20) % 9 == 0 ? ".\n" : " ");
    }
    return file;
  }();
  return path;
}

TrainConfig TinyConfig(double capacity_factor, int accum, int ep) {
  TrainConfig c;
  auto* m = c.mutable_model();
  m->set_vocab_size(257);
  m->set_d_model(32);
  m->set_num_layers(2);
  m->set_num_heads(4);
  m->set_num_kv_heads(2);
  m->set_ffn_dim(64);
  m->set_expert_ffn_dim(32);
  m->set_max_seq_len(32);
  auto* moe = c.mutable_moe();
  moe->set_num_experts(8);
  moe->set_top_k(2);
  moe->set_capacity_factor_train(capacity_factor);
  moe->set_min_capacity(1);
  moe->set_router_jitter_eps(0.05);
  auto* t = c.mutable_train();
  t->set_steps(kSteps);
  t->set_micro_batch_size(2);
  t->set_seq_len(16);
  t->set_grad_accum_steps(accum);
  t->set_seed(42);
  c.mutable_optimizer()->set_lr(kLr);
  c.mutable_optimizer()->set_grad_clip(1.0);
  c.mutable_schedule()->set_kind(switchboard::ScheduleConfig::CONSTANT);
  c.mutable_schedule()->set_warmup_steps(1);
  t->set_eval_batches(3);  // not a multiple of the world: some ranks run an uncounted pass
  c.mutable_data()->set_train_path(WriteCorpus());
  c.mutable_data()->set_val_path(WriteCorpus());
  c.mutable_parallel()->set_expert_parallel_size(ep);
  return c;
}

struct Run {
  std::vector<StepMetrics> steps;
  double val_loss = 0;  // after the last step
  std::vector<Parameter*> params;
  std::vector<Parameter*> buffers;  // auxiliary-loss-free selection biases
  std::unique_ptr<Trainer> trainer;  // keeps params alive
};

// K steps of `config` on `grid` (null: one process).
Run Train(const TrainConfig& config, ProcessGrid* grid, DType dtype) {
  Run run;
  auto trainer = Trainer::Create(config, "", {grid, dtype});
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  if (!trainer.ok()) return run;
  run.trainer = std::move(*trainer);
  for (int s = 0; s < kSteps; ++s) {
    auto m = run.trainer->TrainStep(s);
    EXPECT_TRUE(m.ok()) << m.status();
    if (m.ok()) run.steps.push_back(*m);
  }
  auto val = run.trainer->Evaluate();
  EXPECT_TRUE(val.ok()) << val.status();
  if (val.ok()) run.val_loss = *val;
  run.params = run.trainer->model().Parameters();
  run.buffers = run.trainer->model().Buffers();
  return run;
}

// FNV-1a of a tensor's bytes: replicas must agree bit for bit.
int64_t Fingerprint(const std::vector<Parameter*>& params, bool expert) {
  uint64_t h = 1469598103934665603ULL;
  for (const Parameter* p : params) {
    if (p->is_expert() != expert) continue;
    const auto* bytes = static_cast<const unsigned char*>(p->value.raw());
    for (size_t i = 0; i < p->value.nbytes(); ++i) h = (h ^ bytes[i]) * 1099511628211ULL;
  }
  return static_cast<int64_t>(h);
}

void ExpectReplicasIdentical(const std::vector<Parameter*>& params, Communicator& group,
                             bool expert, const std::string& what) {
  Tensor mine = Tensor::FromVector(std::vector<int64_t>{Fingerprint(params, expert)}, {1});
  Tensor all = Tensor::Zeros({group.size()}, DType::kI64);
  group.AllGather(mine, all);
  for (int r = 1; r < group.size(); ++r) {
    EXPECT_EQ(all.data<int64_t>()[r], all.data<int64_t>()[0])
        << what << ": " << (expert ? "expert" : "replicated") << " parameters of replica " << r
        << " differ from replica 0";
  }
}

void ExpectSameMetrics(const Run& ref, const Run& run, const std::string& what) {
  ASSERT_EQ(run.steps.size(), ref.steps.size()) << what;
  // f64 sums over ~1e4 terms in another order: ~1e-12 relative; 1e-9 is far
  // below any real difference (a micro-batch more or less moves them by 1e-2).
  auto near = [](double a, double b) { return std::fabs(a - b) <= 1e-9 * (std::fabs(a) + 1e-6); };
  for (size_t s = 0; s < ref.steps.size(); ++s) {
    const StepMetrics& a = ref.steps[s];
    const StepMetrics& b = run.steps[s];
    EXPECT_TRUE(near(a.loss, b.loss)) << what << " step " << s << " loss " << a.loss << " vs " << b.loss;
    EXPECT_TRUE(near(a.aux_loss, b.aux_loss)) << what << " step " << s << " aux " << a.aux_loss << " vs " << b.aux_loss;
    EXPECT_TRUE(near(a.z_loss, b.z_loss)) << what << " step " << s << " z " << a.z_loss << " vs " << b.z_loss;
    EXPECT_TRUE(near(a.grad_norm, b.grad_norm)) << what << " step " << s << " grad_norm " << a.grad_norm << " vs " << b.grad_norm;
    EXPECT_TRUE(near(a.dropped_fraction, b.dropped_fraction)) << what << " step " << s << " dropped";
    EXPECT_TRUE(near(a.router_entropy, b.router_entropy)) << what << " step " << s << " entropy";
    EXPECT_TRUE(near(a.load_imbalance, b.load_imbalance)) << what << " step " << s << " load";
    EXPECT_EQ(a.tokens, b.tokens) << what << " step " << s;
  }
  EXPECT_TRUE(near(ref.val_loss, run.val_loss)) << what << " val_loss " << ref.val_loss << " vs " << run.val_loss;
}

// Parameters by name; expert stacks by global expert id.
void ExpectSameParameters(const Run& ref, const Run& run, ProcessGrid& grid, const std::string& what) {
  ASSERT_EQ(run.params.size(), ref.params.size()) << what;
  // AdamW moves an element by at most ~lr per step; rounding differences in
  // f64 gradients move it by ~1e-13 of that. 1e-9 of the total possible move.
  const double move_tol = 1e-9 * kLr * kSteps;
  for (size_t i = 0; i < ref.params.size(); ++i) {
    const Parameter& a = *ref.params[i];
    const Parameter& b = *run.params[i];
    ASSERT_EQ(a.name, b.name);
    Tensor expected = a.value;
    if (a.is_expert()) {
      const int64_t local = b.value.dim(0);
      expected = a.value.Rows(grid.ep_rank() * local, (grid.ep_rank() + 1) * local);
      ASSERT_EQ(b.first_expert, grid.ep_rank() * local) << b.name;
    }
    const std::vector<double> e = expected.ToDoubles(), got = b.value.ToDoubles();
    std::vector<double> tol(e.size());
    for (size_t j = 0; j < e.size(); ++j) tol[j] = move_tol + 8 * kEps64 * std::fabs(e[j]);
    EXPECT_TRUE(AllClose(e, got, tol)) << what << ": " << b.name;
  }
  // The selection biases move by +-rate from integer loads: equal exactly.
  ASSERT_EQ(run.buffers.size(), ref.buffers.size()) << what;
  for (size_t i = 0; i < ref.buffers.size(); ++i) {
    EXPECT_EQ(run.buffers[i]->value.ToDoubles(), ref.buffers[i]->value.ToDoubles())
        << what << ": " << ref.buffers[i]->name;
  }
}

struct Layout {
  int world, ep;
  int ranks_per_node = 0;         // > 0: hierarchical all-to-all over "nodes" of that many ranks
  bool overlap_grad_sync = true;  // the default; one layout runs the blocking sync
};

// Turns on routing variants in a TinyConfig (null: none).
using Variant = std::function<void(switchboard::MoeConfig*)>;

void CheckLayouts(double capacity_factor, const Variant& variant = nullptr) {
  Runtime& rt = Rt();
  const int W = rt.world_size();
  auto config = [&](int accum, int ep) {
    TrainConfig c = TinyConfig(capacity_factor, accum, ep);
    if (variant) variant(c.mutable_moe());
    return c;
  };
  const Run ref = Train(config(kMicroBatches, 1), nullptr, DType::kF64);
  ASSERT_EQ(ref.steps.size(), size_t{kSteps});
  if (capacity_factor > 0) {
    EXPECT_GT(ref.steps[0].dropped_fraction, 0.0) << "capacity should drop choices";
  } else {
    EXPECT_EQ(ref.steps[0].dropped_fraction, 0.0);
  }
  EXPECT_GT(ref.steps[0].grad_norm, 1.0) << "clipping (grad_clip = 1) should be active";
  int checked = 0;
  for (const Layout layout : {Layout{4, 2}, Layout{4, 4}, Layout{4, 4, 2}, Layout{4, 2, 0, false},
                              Layout{2, 1}, Layout{2, 2}, Layout{1, 1}}) {
    if (W % layout.world != 0) continue;
    auto world = rt.world().Split(rt.rank() / layout.world, rt.rank(), "world");
    auto grid = ProcessGrid::Create(*world, layout.ep, layout.ranks_per_node);
    ASSERT_TRUE(grid.ok()) << grid.status();
    const std::string what =
        "np " + std::to_string(layout.world) + " ep " + std::to_string(layout.ep) +
        (layout.ranks_per_node ? " hierarchical " + std::to_string(layout.ranks_per_node) : "") +
        (layout.overlap_grad_sync ? "" : " blocking grad sync") + " cf " +
        std::to_string(capacity_factor);
    if (layout.ranks_per_node) {
      EXPECT_EQ((*grid)->nodes_per_ep_group(), 2) << what;
    }
    TrainConfig c = config(kMicroBatches / layout.world, layout.ep);
    c.mutable_parallel()->set_overlap_grad_sync(layout.overlap_grad_sync);
    const Run run = Train(c, grid->get(), DType::kF64);
    ExpectSameMetrics(ref, run, what);
    ExpectSameParameters(ref, run, **grid, what);
    ExpectReplicasIdentical(run.params, (*grid)->world(), /*expert=*/false, what);
    ExpectReplicasIdentical(run.params, (*grid)->edp_group(), /*expert=*/true, what);
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

TEST(LayoutInvariance, CapacityDropping) { CheckLayouts(1.0); }
TEST(LayoutInvariance, Dropless) { CheckLayouts(0.0); }

// Routing variants (docs/moe_semantics.md): the random draws (gating noise,
// GShard's second expert, expert dropout masks) are keyed by global
// micro-batch and token, the dropout keys travel with the rows, and the
// selection bias follows the load summed over the world.
TEST(LayoutInvariance, ExpertChoiceSharedExpertsNoisyDropout) {
  CheckLayouts(0.25, [](switchboard::MoeConfig* moe) {  // C = 2 of 32 tokens per expert
    moe->set_routing(switchboard::MoeConfig::EXPERT_CHOICE);
    moe->set_capacity_factor_eval(0.5);
    moe->set_num_shared_experts(1);
    moe->set_noisy_gating(true);
    moe->set_expert_dropout(0.1);
  });
}

TEST(LayoutInvariance, TokenChoiceVariantsWithAuxFreeBias) {
  CheckLayouts(1.0, [](switchboard::MoeConfig* moe) {
    moe->set_noisy_gating(true);
    moe->set_balance_loss(switchboard::MoeConfig::CV_IMPORTANCE_LOAD);
    moe->set_second_expert_policy(switchboard::MoeConfig::RANDOM);
    moe->set_batch_prioritized_routing(true);
    moe->set_aux_free_bias_update_rate(1e-2);
    moe->set_expert_dropout(0.1);
  });
}

// ZeRO-1 on the largest layout that fits: parameters and metrics bitwise
// equal to the unsharded optimizer's (f32, AdamW and Adafactor).
void CheckZero1(switchboard::OptimizerConfig::Name name) {
  Runtime& rt = Rt();
  const int W = rt.world_size(), ep = W % 2 == 0 ? 2 : 1;
  if (W == 1) GTEST_SKIP() << "ZeRO-1 needs at least two replicas";
  auto grid = ProcessGrid::Create(rt.world(), ep);
  ASSERT_TRUE(grid.ok()) << grid.status();
  TrainConfig config = TinyConfig(1.0, kMicroBatches % W == 0 ? kMicroBatches / W : 1, ep);
  config.mutable_optimizer()->set_name(name);
  const Run plain = Train(config, grid->get(), DType::kF32);
  config.mutable_parallel()->set_zero1(true);
  config.mutable_parallel()->set_grad_bucket_mb(0.01);  // several all-gather chunks
  const Run zero = Train(config, grid->get(), DType::kF32);
  ASSERT_EQ(zero.params.size(), plain.params.size());
  for (size_t i = 0; i < plain.params.size(); ++i) {
    EXPECT_TRUE(optim_test::BitwiseEqual(plain.params[i]->value, zero.params[i]->value))
        << plain.params[i]->name;
  }
  for (size_t s = 0; s < plain.steps.size(); ++s) {
    EXPECT_EQ(plain.steps[s].loss, zero.steps[s].loss) << "step " << s;
    EXPECT_EQ(plain.steps[s].grad_norm, zero.steps[s].grad_norm) << "step " << s;
  }
  auto* zero_opt = dynamic_cast<Zero1Optimizer*>(&zero.trainer->optimizer());
  ASSERT_NE(zero_opt, nullptr);
  int64_t all = 0;
  for (const Parameter* p : zero.params) all += p->value.numel();
  EXPECT_LT(zero_opt->owned_elements(), all) << "state should be sharded";
}

TEST(Zero1, AdamWEqualsUnsharded) { CheckZero1(switchboard::OptimizerConfig::ADAMW); }
TEST(Zero1, AdafactorEqualsUnsharded) { CheckZero1(switchboard::OptimizerConfig::ADAFACTOR); }

// The same layout over NCCL on GPUs (train.device = CUDA, one rank per GPU,
// ep = world, hierarchical when the world is 2 "nodes" x 2) against the MPI
// run on the CPU, both f32: metrics within f32 accumulation error of each
// other. Skips on every rank, saying why, without a GPU per rank or while
// the configuration validator does not accept CUDA training.
TEST(LayoutInvariance, OverNcclOnGpus) {
  Runtime& rt = Rt();
  const int W = rt.world_size();
  if (!NcclBuilt()) GTEST_SKIP() << "built without CUDA";
  if (kMicroBatches % W != 0) GTEST_SKIP() << "world " << W << " does not divide 4 micro-batches";
  TrainConfig gpu = TinyConfig(1.0, kMicroBatches / W, W);
  gpu.mutable_train()->set_device(switchboard::TrainLoopConfig::CUDA);
  gpu.mutable_parallel()->set_backend(switchboard::ParallelConfig::NCCL);
  if (absl::Status s = ValidateConfig(gpu, W); !s.ok()) {
    GTEST_SKIP() << "CUDA training is not accepted: " << s.message();
  }
  absl::StatusOr<int> device = BindLocalDevice(rt);
  if (!rt.AllOk(device.ok())) {
    GTEST_SKIP() << "every rank needs its own GPU: "
                 << (device.ok() ? "another rank has none" : device.status().message());
  }
  auto nccl_world = CreateNcclWorld(rt, *device);
  ASSERT_TRUE(rt.AllOk(nccl_world.ok())) << nccl_world.status();
  const int ranks_per_node = W == 4 ? 2 : 0;
  auto gpu_grid = ProcessGrid::Create(**nccl_world, W, ranks_per_node);
  auto cpu_grid = ProcessGrid::Create(rt.world(), W);
  ASSERT_TRUE(gpu_grid.ok() && cpu_grid.ok());
  const sb::Run cpu = Train(TinyConfig(1.0, kMicroBatches / W, W), cpu_grid->get(), DType::kF32);
  const sb::Run run = Train(gpu, gpu_grid->get(), DType::kF32);
  ASSERT_EQ(run.steps.size(), cpu.steps.size());
  // f32 sums of ~1e4 terms in another order (cuBLAS vs OpenBLAS): ~1e-5 relative.
  auto near = [](double a, double b) { return std::fabs(a - b) <= 1e-4 * (std::fabs(a) + 1e-3); };
  for (size_t s = 0; s < cpu.steps.size(); ++s) {
    EXPECT_TRUE(near(cpu.steps[s].loss, run.steps[s].loss))
        << "step " << s << " loss " << cpu.steps[s].loss << " vs " << run.steps[s].loss;
    EXPECT_TRUE(near(cpu.steps[s].grad_norm, run.steps[s].grad_norm))
        << "step " << s << " grad_norm " << cpu.steps[s].grad_norm << " vs "
        << run.steps[s].grad_norm;
    EXPECT_EQ(cpu.steps[s].tokens, run.steps[s].tokens);
  }
  EXPECT_TRUE(near(cpu.val_loss, run.val_loss)) << cpu.val_loss << " vs " << run.val_loss;
}

}  // namespace
}  // namespace sb
