// Tests of ValidateConfig (configs/validate.cc) and MoeLayerMask
// (configs/layer_mask.cc): one case per rule, each breaking exactly one rule
// of an otherwise valid config and checking the error names the field(s) in
// one line (no cascade of follow-on errors).
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "configs/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moe/core/device_memory.h"

namespace sb {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TrainConfig WithOverrides(const std::vector<std::string>& overrides) {
  TrainConfig config;  // the schema defaults are a valid config
  for (const std::string& o : overrides) {
    const absl::Status status = ApplyOverride(o, &config);
    EXPECT_TRUE(status.ok()) << status;
  }
  return config;
}

TEST(ValidateConfig, DefaultsAreValid) {
  const absl::Status status = ValidateConfig(TrainConfig(), 1);
  EXPECT_TRUE(status.ok()) << status;
}

TEST(ValidateConfig, EdgeValuesThatAreAllowed) {
  for (const std::vector<std::string>& overrides : std::vector<std::vector<std::string>>{
           {"model.ffn_dim=0", "model.expert_ffn_dim=256"},  // every block MoE, own width
           {"moe.moe_layer_interval=0"},                      // dense model
           {"moe.moe_layer_interval=8"},                      // only the last block
           {"moe.moe_layers=0,7", "moe.moe_layer_interval=0"},
           {"moe.capacity_factor_train=0", "moe.capacity_factor_eval=-1"},  // dropless
           {"moe.top_k=8", "moe.min_capacity=0", "moe.z_loss_coef=0", "moe.aux_loss_coef=0"},
           {"optimizer.grad_clip=0", "optimizer.weight_decay=0", "optimizer.beta1=0"},
           {"schedule.min_lr_ratio=1", "schedule.warmup_steps=0"},
           {"train.eval_every=0", "train.seq_len=2048", "checkpoint.keep_last=0"},
           {"parallel.expert_parallel_size=8"},
           {"parallel.all_to_all=HIERARCHICAL", "parallel.ranks_per_node=4",
            "parallel.overlap_grad_sync=false", "parallel.backend=MPI"},
           // Routing variants, alone and combined where they compose.
           {"moe.routing=EXPERT_CHOICE", "moe.num_shared_experts=2", "moe.expert_dropout=0.25",
            "moe.noisy_gating=true"},
           {"moe.noisy_gating=true", "moe.balance_loss=CV_IMPORTANCE_LOAD",
            "moe.second_expert_policy=RANDOM", "moe.batch_prioritized_routing=true",
            "moe.aux_free_bias_update_rate=0.001", "moe.shared_expert_ffn_dim=64"},
       }) {
    const int world = overrides[0] == "parallel.expert_parallel_size=8" ? 16 : 1;
    const absl::Status status = ValidateConfig(WithOverrides(overrides), world);
    EXPECT_TRUE(status.ok()) << absl::StrJoin(overrides, " ") << ": " << status;
  }
}

// Separate from the one-error-per-case table below: train.device = CUDA
// adds its own error while the CUDA path is incomplete.
TEST(ValidateConfig, MpiBackendRejectsCudaDevice) {
  const absl::Status status =
      ValidateConfig(WithOverrides({"train.device=CUDA", "parallel.backend=MPI"}), 1);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("parallel.backend = MPI moves host buffers only: train.device = CUDA "
                        "needs NCCL"));
}

struct RuleCase {
  std::string name;                    // test name
  std::vector<std::string> overrides;  // applied to the defaults
  std::string expected;                // substring of the one-line error
  int world_size = 1;
};

// gtest prints a failing case's name, not its bytes.
void PrintTo(const RuleCase& c, std::ostream* os) { *os << c.name; }

class ValidateRule : public ::testing::TestWithParam<RuleCase> {};

TEST_P(ValidateRule, FailsNamingTheField) {
  const RuleCase& c = GetParam();
  const absl::Status status = ValidateConfig(WithOverrides(c.overrides), c.world_size);
  ASSERT_FALSE(status.ok()) << absl::StrJoin(c.overrides, " ");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr(c.expected));
  EXPECT_THAT(message, Not(HasSubstr("\n"))) << "one mistake, several errors";
}

const RuleCase kRuleCases[] = {
    // model
    {"VocabSize", {"model.vocab_size=0"}, "model.vocab_size = 0 must be >= 1"},
    {"NumLayersHuge", {"model.num_layers=2000000000", "moe.moe_layer_interval=1"},
     "model.num_layers = 2000000000 exceeds the supported maximum 4096"},
    {"DModelHuge", {"model.d_model=4194304", "model.num_heads=8", "model.num_kv_heads=8"},
     "model.d_model = 4194304 exceeds the supported maximum"},
    {"VocabHuge", {"model.vocab_size=100000000"}, "model.vocab_size = 100000000 exceeds"},
    {"ExpertsHuge", {"moe.num_experts=1000000"}, "moe.num_experts = 1000000 exceeds"},
    {"TokenChoicesOverflow",
     {"train.micro_batch_size=1000000", "train.seq_len=2048", "model.max_seq_len=2048"},
     "token choices per micro-batch exceed 2^31"},
    {"DModel", {"model.d_model=-8"}, "model.d_model = -8"},
    {"NumLayers", {"model.num_layers=0"}, "model.num_layers = 0"},
    {"NumHeads", {"model.num_heads=0"}, "model.num_heads = 0"},
    {"NumKvHeads", {"model.num_kv_heads=0"}, "model.num_kv_heads = 0"},
    {"FfnDimWithDenseBlock", {"model.ffn_dim=0", "moe.moe_layer_interval=2",
                              "model.expert_ffn_dim=64"}, "model.ffn_dim = 0 must be >= 1 (block 0"},
    {"FfnDimUsedByExperts", {"model.ffn_dim=0"}, "model.ffn_dim = 0 must be >= 1 (experts use it"},
    {"FfnDimNegative", {"model.ffn_dim=-1", "model.expert_ffn_dim=64"}, "model.ffn_dim = -1"},
    {"ExpertFfnDim", {"model.expert_ffn_dim=-1"}, "model.expert_ffn_dim = -1"},
    {"RopeTheta", {"model.rope_theta=0"}, "model.rope_theta = 0 must be > 0"},
    {"NormEps", {"model.norm_eps=-1e-6"}, "model.norm_eps"},
    {"MaxSeqLen", {"model.max_seq_len=0"}, "model.max_seq_len = 0"},
    {"InitStd", {"model.init_std=-0.02"}, "model.init_std"},
    {"HeadsDivideDModel", {"model.d_model=100"},
     "model.d_model = 100 is not divisible by model.num_heads = 8"},
    {"HeadDimEven", {"model.d_model=24"}, "model.d_model / model.num_heads = 3"},
    {"KvHeadsDivideHeads", {"model.num_kv_heads=3"},
     "model.num_heads = 8 is not divisible by model.num_kv_heads = 3"},
    // moe
    {"NumExperts", {"moe.num_experts=0"}, "moe.num_experts = 0"},
    {"TopKExceedsExperts", {"moe.top_k=9"}, "moe.top_k = 9 exceeds moe.num_experts = 8"},
    {"TopKPositive", {"moe.top_k=0"}, "moe.top_k = 0 must be >= 1"},
    {"MinCapacity", {"moe.min_capacity=-1"}, "moe.min_capacity = -1"},
    {"JitterBelowOne", {"moe.router_jitter_eps=1"}, "moe.router_jitter_eps = 1 must be in [0, 1)"},
    {"JitterNonNegative", {"moe.router_jitter_eps=-0.1"}, "moe.router_jitter_eps"},
    {"AuxLossCoef", {"moe.aux_loss_coef=-0.01"}, "moe.aux_loss_coef"},
    {"ZLossCoef", {"moe.z_loss_coef=-0.001"}, "moe.z_loss_coef"},
    {"LayerInterval", {"moe.moe_layer_interval=-1"}, "moe.moe_layer_interval = -1"},
    {"LayerIntervalSelectsNothing", {"moe.moe_layer_interval=9"},
     "moe.moe_layer_interval = 9 selects no block of model.num_layers = 8"},
    {"MoeLayersInRange", {"moe.moe_layers=0,8"}, "moe.moe_layers[1] = 8 is outside [0, model.num_layers = 8)"},
    {"MoeLayersNonNegative", {"moe.moe_layers=-1"}, "moe.moe_layers[0] = -1"},
    {"MoeLayersUnique", {"moe.moe_layers=3,1,3"}, "moe.moe_layers[2] = 3 repeats"},
    {"CapacityFactorFinite", {"moe.capacity_factor_train=inf"},
     "moe.capacity_factor_train = inf must be finite"},
    // moe routing variants
    {"SharedExperts", {"moe.num_shared_experts=-1"}, "moe.num_shared_experts = -1 must be >= 0"},
    {"SharedExpertFfnDim", {"moe.shared_expert_ffn_dim=-4"}, "moe.shared_expert_ffn_dim = -4"},
    {"AuxFreeRate", {"moe.aux_free_bias_update_rate=-0.001"}, "moe.aux_free_bias_update_rate"},
    {"ExpertDropoutBelowOne", {"moe.expert_dropout=1"}, "moe.expert_dropout = 1 must be in [0, 1)"},
    {"CvLossNeedsNoise", {"moe.balance_loss=CV_IMPORTANCE_LOAD"},
     "moe.balance_loss = CV_IMPORTANCE_LOAD needs moe.noisy_gating = true"},
    {"CvLossNeedsTopKBelowExperts",
     {"moe.balance_loss=CV_IMPORTANCE_LOAD", "moe.noisy_gating=true", "moe.top_k=8"},
     "needs moe.top_k = 8 < moe.num_experts = 8"},
    {"RandomSecondExpertNeedsTop2", {"moe.second_expert_policy=RANDOM", "moe.top_k=1"},
     "moe.second_expert_policy = RANDOM needs moe.top_k = 2, not 1"},
    {"ExpertChoiceNeedsCapacity", {"moe.routing=EXPERT_CHOICE", "moe.capacity_factor_eval=0"},
     "moe.routing = EXPERT_CHOICE needs moe.capacity_factor_train and moe.capacity_factor_eval > 0"},
    {"ExpertChoiceRawGates", {"moe.routing=EXPERT_CHOICE", "moe.normalize_top_k=true"},
     "moe.routing = EXPERT_CHOICE needs moe.normalize_top_k = false"},
    {"ExpertChoiceNoRandomSecond", {"moe.routing=EXPERT_CHOICE", "moe.second_expert_policy=RANDOM"},
     "moe.routing = EXPERT_CHOICE needs moe.second_expert_policy = ALL"},
    {"ExpertChoiceNoPriority", {"moe.routing=EXPERT_CHOICE", "moe.batch_prioritized_routing=true"},
     "moe.routing = EXPERT_CHOICE with moe.batch_prioritized_routing"},
    {"ExpertChoiceNoAuxFree", {"moe.routing=EXPERT_CHOICE", "moe.aux_free_bias_update_rate=0.001"},
     "balanced by construction"},
    {"ExpertChoiceNoCvLoss",
     {"moe.routing=EXPERT_CHOICE", "moe.noisy_gating=true", "moe.balance_loss=CV_IMPORTANCE_LOAD"},
     "moe.routing = EXPERT_CHOICE needs moe.balance_loss = SWITCH"},
    {"ExpertChoiceRowsOverflow",
     {"moe.routing=EXPERT_CHOICE", "moe.num_experts=65536", "train.micro_batch_size=20000",
      "train.seq_len=2048", "model.max_seq_len=2048"},
     "train.micro_batch_size * train.seq_len * moe.num_experts = "},
    // parallel
    {"ExpertParallelPositive", {"parallel.expert_parallel_size=0"},
     "parallel.expert_parallel_size = 0"},
    {"ExpertsDivisibleByEp", {"parallel.expert_parallel_size=3"},
     "moe.num_experts = 8 is not divisible by parallel.expert_parallel_size = 3", 6},
    {"WorldDivisibleByEp", {"parallel.expert_parallel_size=4"},
     "world size 6 is not divisible by parallel.expert_parallel_size = 4", 6},
    {"WorldPositive", {}, "world size = 0", 0},
    {"GradBucketPositive", {"parallel.grad_bucket_mb=0"}, "parallel.grad_bucket_mb = 0 must be > 0"},
    {"CollectiveTimeoutNonNegative", {"parallel.collective_timeout_s=-1"},
     "parallel.collective_timeout_s = -1 must be >= 0"},
    {"NcclNeedsCudaDevice", {"parallel.backend=NCCL"},
     "parallel.backend = NCCL moves device buffers: it needs train.device = CUDA"},
    {"RanksPerNodeNonNegative", {"parallel.ranks_per_node=-1"},
     "parallel.ranks_per_node = -1 must be >= 0"},
    {"HierarchicalNeedsWholeNodes",
     {"parallel.all_to_all=HIERARCHICAL", "parallel.ranks_per_node=3",
      "parallel.expert_parallel_size=2"},
     "parallel.expert_parallel_size = 2 and parallel.ranks_per_node = 3 must divide one another",
     6},
    // optimizer
    {"Lr", {"optimizer.lr=0"}, "optimizer.lr = 0 must be > 0"},
    {"LrNotNan", {"optimizer.lr=nan"}, "optimizer.lr = nan must be finite"},
    {"WeightDecay", {"optimizer.weight_decay=-0.1"}, "optimizer.weight_decay"},
    {"Beta1", {"optimizer.beta1=1"}, "optimizer.beta1 = 1 must be in [0, 1)"},
    {"Beta2", {"optimizer.beta2=-0.5"}, "optimizer.beta2"},
    {"Eps", {"optimizer.eps=0"}, "optimizer.eps = 0"},
    {"AdafactorDecayRatePositive", {"optimizer.adafactor_decay_rate=0"},
     "optimizer.adafactor_decay_rate = 0"},
    {"AdafactorDecayRateAtMostOne", {"optimizer.adafactor_decay_rate=1.5"},
     "optimizer.adafactor_decay_rate = 1.5"},
    {"AdafactorClipThreshold", {"optimizer.adafactor_clip_threshold=0"},
     "optimizer.adafactor_clip_threshold"},
    {"AdafactorEps1", {"optimizer.adafactor_eps1=0"}, "optimizer.adafactor_eps1"},
    {"AdafactorEps2", {"optimizer.adafactor_eps2=-1"}, "optimizer.adafactor_eps2"},
    {"AdafactorBeta1", {"optimizer.adafactor_beta1=1"}, "optimizer.adafactor_beta1"},
    // schedule
    {"WarmupSteps", {"schedule.warmup_steps=-1"}, "schedule.warmup_steps = -1"},
    {"MinLrRatio", {"schedule.min_lr_ratio=1.5"}, "schedule.min_lr_ratio = 1.5 must be in [0, 1]"},
    {"DecaySteps", {"schedule.decay_steps=-1"}, "schedule.decay_steps"},
    // train
    {"Steps", {"train.steps=0"}, "train.steps = 0"},
    {"MicroBatchSize", {"train.micro_batch_size=0"}, "train.micro_batch_size"},
    {"SeqLen", {"train.seq_len=0"}, "train.seq_len = 0"},
    {"SeqLenFitsModel", {"train.seq_len=4096"}, "train.seq_len = 4096 exceeds model.max_seq_len = 2048"},
    {"GradAccumSteps", {"train.grad_accum_steps=0"}, "train.grad_accum_steps"},
    {"LogEvery", {"train.log_every=0"}, "train.log_every = 0 must be >= 1"},
    {"EvalEvery", {"train.eval_every=-1"}, "train.eval_every = -1 must be >= 0"},
    {"EvalBatches", {"train.eval_batches=0"}, "train.eval_batches"},
    // checkpoint
    {"CheckpointEvery", {"checkpoint.every_steps=-1"}, "checkpoint.every_steps"},
    {"KeepLast", {"checkpoint.keep_last=-1"}, "checkpoint.keep_last"},
    {"MaxNonfiniteSteps", {"checkpoint.max_nonfinite_steps=0"},
     "checkpoint.max_nonfinite_steps = 0 must be >= 1"},
    {"PeakTflopsNonNegative", {"logging.peak_tflops=-1"}, "logging.peak_tflops = -1 must be >= 0"},
};

INSTANTIATE_TEST_SUITE_P(Rules, ValidateRule, ::testing::ValuesIn(kRuleCases),
                         [](const ::testing::TestParamInfo<RuleCase>& param_info) {
                           return param_info.param.name;
                         });

TEST(ValidateConfig, CudaDeviceNeedsACudaBuild) {
  // Several ranks on GPUs are fine: they talk over NCCL (docs/parallel.md).
  for (int world : {1, 2}) {
    const absl::Status s = ValidateConfig(WithOverrides({"train.device=CUDA"}), world);
    if (CudaBuilt()) {
      EXPECT_TRUE(s.ok()) << s;
    } else {
      ASSERT_FALSE(s.ok());
      EXPECT_THAT(std::string(s.message()),
                  HasSubstr("train.device = CUDA but this binary was built without CUDA"));
    }
  }
}

TEST(ValidateConfig, Bf16NeedsCuda) {
  const absl::Status status = ValidateConfig(WithOverrides({"train.precision=BF16"}), 1);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("train.precision = BF16 needs train.device = CUDA"));
  EXPECT_TRUE(ValidateConfig(WithOverrides({"train.precision=FP32"}), 1).ok());
  const absl::Status chunk = ValidateConfig(WithOverrides({"train.lm_head_chunk_tokens=-1"}), 1);
  EXPECT_THAT(std::string(chunk.message()), HasSubstr("train.lm_head_chunk_tokens = -1 must be >= 0"));
}

TEST(ValidateConfig, ReportsEveryViolationInSchemaOrder) {
  const absl::Status status =
      ValidateConfig(WithOverrides({"train.steps=0", "moe.top_k=9", "optimizer.lr=-1"}), 1);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(std::string(status.message()),
            "moe.top_k = 9 exceeds moe.num_experts = 8\n"
            "optimizer.lr = -1 must be > 0\n"
            "train.steps = 0 must be >= 1");
}

std::vector<int> MoeBlocks(const std::vector<std::string>& overrides) {
  const std::vector<bool> mask = MoeLayerMask(WithOverrides(overrides));
  std::vector<int> blocks;
  for (int i = 0; i < static_cast<int>(mask.size()); ++i) {
    if (mask[i]) blocks.push_back(i);
  }
  return blocks;
}

TEST(MoeLayerMask, IntervalAndExplicitList) {
  using V = std::vector<int>;
  EXPECT_EQ(MoeLayerMask(TrainConfig()).size(), 8u);
  EXPECT_EQ(MoeBlocks({}), (V{0, 1, 2, 3, 4, 5, 6, 7}));  // default interval 1
  EXPECT_EQ(MoeBlocks({"moe.moe_layer_interval=2"}), (V{1, 3, 5, 7}));
  EXPECT_EQ(MoeBlocks({"moe.moe_layer_interval=4"}), (V{3, 7}));
  EXPECT_EQ(MoeBlocks({"moe.moe_layer_interval=3", "model.num_layers=7"}), (V{2, 5}));
  EXPECT_EQ(MoeBlocks({"moe.moe_layer_interval=0"}), V{});  // dense
  // An explicit list wins over the interval, whatever the interval is.
  EXPECT_EQ(MoeBlocks({"moe.moe_layers=5,0", "moe.moe_layer_interval=2"}), (V{0, 5}));
  EXPECT_EQ(MoeBlocks({"moe.moe_layers=6", "moe.moe_layer_interval=0"}), V{6});
  // Out-of-range entries are ignored here (ValidateConfig rejects them).
  EXPECT_EQ(MoeBlocks({"moe.moe_layers=1,99,-1"}), V{1});
  EXPECT_TRUE(MoeLayerMask(WithOverrides({"model.num_layers=-3"})).empty());
}

}  // namespace
}  // namespace sb
