// Model weights by Hugging Face name: bitwise save/load round trips, dtype
// conversion, precise errors for missing / mis-shaped / unexpected names
// (and no change to the model when they happen), and checkpoints moving
// between expert-parallel layouts by global expert id.
#include "moe/io/model_weights.h"

#include <algorithm>
#include <functional>
#include <set>
#include <tuple>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/small_model.h"
#include "moe/ops/ops.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

// Stands in for an expert-parallel rank: construction only reads ep_size and
// ep_rank (local experts [rank * E / size, (rank + 1) * E / size)).
class FakeEpDispatcher : public TokenDispatcher {
 public:
  FakeEpDispatcher(int size, int rank) : size_(size), rank_(rank) {}
  int ep_size() const override { return size_; }
  int ep_rank() const override { return rank_; }
  DispatchPlan Plan(const std::vector<int64_t>&) override {
    SB_CHECK(false) << "FakeEpDispatcher only serves construction";
    return {};
  }
  void Dispatch(const DispatchPlan&, const Tensor&, const Tensor&) override { SB_CHECK(false); }
  void Combine(const DispatchPlan&, const Tensor&, const Tensor&) override { SB_CHECK(false); }

 private:
  int size_, rank_;
};

ModelOptions SmallOptions(bool tie = false) {
  ModelOptions o = testing::SmallModelOptions(tie);
  o.router.capacity_factor_train = 0.0;
  return o;
}

std::unique_ptr<Model> MakeModel(uint64_t seed, DType dtype = DType::kF32, bool tie = false,
                                 TokenDispatcher* dispatcher = nullptr) {
  auto model = std::make_unique<Model>(SmallOptions(tie), dispatcher, dtype, Device::kCpu);
  model->InitWeights(seed);
  return model;
}

std::string Bytes(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw()), t.nbytes());
}

// name -> bytes of every tensor NamedModelWeights lists.
std::map<std::string, std::string> Snapshot(Model& model) {
  std::map<std::string, std::string> out;
  for (const auto& [name, t] : NamedModelWeights(model)) out[name] = Bytes(t);
  return out;
}

std::unique_ptr<SafetensorsSet> OpenOrDie(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SafetensorsSet>> s = SafetensorsSet::Open(path);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

double Loss(Model& model) {
  std::vector<int32_t> ids(8);
  for (int i = 0; i < 8; ++i) ids[i] = (i * 5 + 2) % 11;
  const Tensor x = Tensor::FromVector(ids, {2, 4});
  return model.Forward(x, x, StepContext{}).total_loss;
}

TEST(ModelWeights, FileHoldsHuggingFaceNamesWithGlobalExpertIds) {
  TempDir dir;
  for (bool tie : {false, true}) {
    auto model = MakeModel(1, DType::kF32, tie);
    const std::string path = dir.Path("m.safetensors");
    ASSERT_TRUE(SaveModelWeights(*model, path).ok());
    auto set = OpenOrDie(path);
    const std::vector<std::string> names = set->names();
    const std::set<std::string> got(names.begin(), names.end());
    for (const char* name :
         {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight",
          "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
          "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
          "model.layers.0.post_attention_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
          "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
          "model.layers.1.block_sparse_moe.gate.weight",
          "model.layers.2.block_sparse_moe.experts.0.w1.weight",
          "model.layers.2.block_sparse_moe.experts.3.w2.weight",
          "model.layers.1.block_sparse_moe.experts.2.w3.weight"}) {
      EXPECT_TRUE(got.count(name)) << name;
    }
    EXPECT_EQ(got.count("lm_head.weight"), tie ? 0u : 1u);
    // embed + final norm (+ head); dense layer: 2 norms + 4 attention + 3 MLP = 9;
    // MoE layer: 2 norms + 4 attention + gate + 4 experts x 3 = 19.
    EXPECT_EQ(got.size(), 2u + (tie ? 0u : 1u) + 9u + 2u * 19u);
    EXPECT_EQ(set->Info("model.layers.2.block_sparse_moe.experts.3.w2.weight")->shape,
              (Shape{8, 6}));
    EXPECT_EQ(set->Info("model.layers.1.block_sparse_moe.gate.weight")->shape, (Shape{4, 8}));
    EXPECT_EQ(set->files()[0]->metadata().at("format"), "pt");
  }
}

TEST(ModelWeights, SaveThenLoadIsBitwiseAndGivesTheSameLoss) {
  TempDir dir;
  for (bool tie : {false, true}) {
    for (DType dtype : {DType::kF32, DType::kF64}) {
      auto a = MakeModel(1, dtype, tie);
      auto b = MakeModel(2, dtype, tie);
      ASSERT_NE(Snapshot(*a), Snapshot(*b));
      const std::string path = dir.Path("m.safetensors");
      SaveWeightsOptions options;
      options.metadata["step"] = "7";
      ASSERT_TRUE(SaveModelWeights(*a, path, options).ok());
      const absl::Status s = LoadModelWeights(*b, *OpenOrDie(path));
      ASSERT_TRUE(s.ok()) << s;
      EXPECT_EQ(Snapshot(*a), Snapshot(*b));
      EXPECT_EQ(Loss(*a), Loss(*b));
    }
  }
}

TEST(ModelWeights, ConvertsDTypesOnSaveAndLoad) {
  TempDir dir;
  auto a = MakeModel(1, DType::kF32);
  const std::string path = dir.Path("m.safetensors");
  // f32 file -> f64 model: exact.
  ASSERT_TRUE(SaveModelWeights(*a, path).ok());
  auto wide = MakeModel(2, DType::kF64);
  ASSERT_TRUE(LoadModelWeights(*wide, *OpenOrDie(path)).ok());
  const auto narrow_weights = NamedModelWeights(*a);
  const auto wide_weights = NamedModelWeights(*wide);
  for (size_t i = 0; i < narrow_weights.size(); ++i)
    EXPECT_EQ(narrow_weights[i].second.ToDoubles(), wide_weights[i].second.ToDoubles());
  // bf16 storage -> f32 model: the bf16 rounding of the weights.
  SaveWeightsOptions bf16;
  bf16.float_storage = SafetensorsDType::kBF16;
  ASSERT_TRUE(SaveModelWeights(*a, path, bf16).ok());
  auto b = MakeModel(2, DType::kF32);
  ASSERT_TRUE(LoadModelWeights(*b, *OpenOrDie(path)).ok());
  const auto loaded = NamedModelWeights(*b);
  for (size_t i = 0; i < narrow_weights.size(); ++i) {
    const Tensor& src = narrow_weights[i].second;
    Tensor rounded = Tensor::Empty(src.shape(), DType::kBF16);
    ops::Convert(src, rounded);
    EXPECT_EQ(loaded[i].second.ToDoubles(), rounded.ToDoubles()) << loaded[i].first;
  }
}

// Writes the model's tensors with `edit` applied to the list.
void WriteEdited(Model& model, const std::string& path,
                 const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  std::vector<std::pair<std::string, Tensor>> tensors = NamedModelWeights(model);
  edit(tensors);
  ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
}

void Drop(std::vector<std::pair<std::string, Tensor>>& v, const std::string& name) {
  const size_t before = v.size();
  v.erase(std::remove_if(v.begin(), v.end(), [&](const auto& e) { return e.first == name; }),
          v.end());
  ASSERT_EQ(v.size(), before - 1) << name;
}

TEST(ModelWeights, MissingTensorsAreNamedAndNothingIsLoaded) {
  TempDir dir;
  auto a = MakeModel(1);
  auto b = MakeModel(2);
  const auto before = Snapshot(*b);
  const std::string path = dir.Path("m.safetensors");
  WriteEdited(*a, path, [](auto& v) {
    Drop(v, "model.norm.weight");
    Drop(v, "model.layers.1.block_sparse_moe.experts.2.w3.weight");
  });
  const absl::Status s = LoadModelWeights(*b, *OpenOrDie(path));
  ASSERT_FALSE(s.ok());
  const std::string message(s.message());
  EXPECT_THAT(message, HasSubstr(path));
  EXPECT_THAT(message, HasSubstr("2 missing"));
  EXPECT_THAT(message, HasSubstr("model.norm.weight"));
  EXPECT_THAT(message, HasSubstr("model.layers.1.block_sparse_moe.experts.2.w3.weight"));
  EXPECT_EQ(Snapshot(*b), before);
}

TEST(ModelWeights, MisShapedAndMistypedTensorsAreNamed) {
  TempDir dir;
  auto a = MakeModel(1);
  auto b = MakeModel(2);
  const auto before = Snapshot(*b);
  const std::string path = dir.Path("m.safetensors");
  WriteEdited(*a, path, [](auto& v) {
    for (auto& [name, t] : v) {
      if (name == "model.layers.0.mlp.up_proj.weight") t = Tensor::Zeros({8, 12});
      if (name == "model.layers.2.block_sparse_moe.experts.1.w2.weight") t = Tensor::Zeros({8});
      if (name == "model.norm.weight") t = Tensor::Zeros({8}, DType::kI32);
    }
  });
  const absl::Status s = LoadModelWeights(*b, *OpenOrDie(path));
  ASSERT_FALSE(s.ok());
  const std::string message(s.message());
  EXPECT_THAT(message, HasSubstr("3 mismatched"));
  EXPECT_THAT(message, HasSubstr("model.layers.0.mlp.up_proj.weight is [8, 12] in the file, "
                                 "the model wants [12, 8]"));
  EXPECT_THAT(message, HasSubstr("experts.1.w2.weight is [8] in the file"));
  EXPECT_THAT(message, HasSubstr("model.norm.weight is I32 in the file"));
  EXPECT_EQ(Snapshot(*b), before);
}

TEST(ModelWeights, ExtraNamesNeedAllowExtra) {
  TempDir dir;
  auto a = MakeModel(1);
  const std::string path = dir.Path("m.safetensors");
  // Old transformers Llama checkpoints carry RoPE buffers.
  const std::string inv_freq = "model.layers.0.self_attn.rotary_emb.inv_freq";
  WriteEdited(*a, path, [&](auto& v) { v.emplace_back(inv_freq, Tensor::Zeros({2})); });
  auto b = MakeModel(2);
  const absl::Status s = LoadModelWeights(*b, *OpenOrDie(path));
  EXPECT_THAT(std::string(s.message()), HasSubstr("1 unexpected"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(inv_freq));
  EXPECT_THAT(std::string(s.message()), HasSubstr("allow_extra"));
  LoadWeightsOptions allow;
  allow.allow_extra = true;
  ASSERT_TRUE(LoadModelWeights(*b, *OpenOrDie(path), allow).ok());
  EXPECT_EQ(Snapshot(*a), Snapshot(*b));

  // An expert id beyond num_experts is extra; so is a head for a tied model.
  const std::string expert4 = "model.layers.1.block_sparse_moe.experts.4.w1.weight";
  WriteEdited(*a, path, [&](auto& v) { v.emplace_back(expert4, Tensor::Zeros({6, 8})); });
  EXPECT_THAT(std::string(LoadModelWeights(*b, *OpenOrDie(path)).message()), HasSubstr(expert4));
  ASSERT_TRUE(SaveModelWeights(*a, path).ok());
  auto tied = MakeModel(2, DType::kF32, /*tie=*/true);
  EXPECT_THAT(std::string(LoadModelWeights(*tied, *OpenOrDie(path)).message()),
              HasSubstr("unexpected (LoadWeightsOptions::allow_extra): lm_head.weight"));
}

// The expert stacks of a model, by parameter template name.
std::map<std::string, Tensor> ExpertStacks(Model& model) {
  std::map<std::string, Tensor> out;
  for (Parameter* p : model.Parameters())
    if (p->is_expert()) out[p->name] = p->value;
  return out;
}

TEST(ModelWeights, CheckpointsMoveBetweenExpertParallelLayouts) {
  TempDir dir;
  auto full = MakeModel(1);  // ep = 1: experts 0..3
  const std::string full_path = dir.Path("full.safetensors");
  ASSERT_TRUE(SaveModelWeights(*full, full_path).ok());

  // ep = 2: rank r holds experts [2r, 2r + 2); each loads its own slices.
  FakeEpDispatcher rank0(2, 0), rank1(2, 1);
  auto r0 = MakeModel(2, DType::kF32, false, &rank0);
  auto r1 = MakeModel(3, DType::kF32, false, &rank1);
  for (auto* ranked : {r0.get(), r1.get()}) {
    const absl::Status s = LoadModelWeights(*ranked, *OpenOrDie(full_path));
    ASSERT_TRUE(s.ok()) << s;
  }
  const auto full_stacks = ExpertStacks(*full);
  for (auto [rank, model] : {std::pair{0, r0.get()}, std::pair{1, r1.get()}}) {
    for (const auto& [name, stack] : ExpertStacks(*model)) {
      EXPECT_EQ(stack.dim(0), 2);
      EXPECT_EQ(Bytes(stack), Bytes(full_stacks.at(name).Rows(2 * rank, 2 * rank + 2))) << name;
    }
  }
  // Replicated tensors load too (same bytes as the full model's).
  EXPECT_EQ(Bytes(r1->Parameters()[0]->value), Bytes(full->Parameters()[0]->value));

  // Back: each rank writes its experts, rank 0 the replicated tensors, an
  // index ties the shards together, and an ep = 1 model loads it all.
  SaveWeightsOptions experts, replicated;
  experts.selection = WeightSelection::kExperts;
  replicated.selection = WeightSelection::kReplicated;
  ASSERT_TRUE(SaveModelWeights(*r0, dir.Path("experts-0.safetensors"), experts).ok());
  ASSERT_TRUE(SaveModelWeights(*r1, dir.Path("experts-1.safetensors"), experts).ok());
  ASSERT_TRUE(SaveModelWeights(*r0, dir.Path("replicated.safetensors"), replicated).ok());
  std::map<std::string, std::string> weight_map;
  for (const auto& [shard, model, selection] :
       {std::tuple{"experts-0.safetensors", r0.get(), WeightSelection::kExperts},
        std::tuple{"experts-1.safetensors", r1.get(), WeightSelection::kExperts},
        std::tuple{"replicated.safetensors", r0.get(), WeightSelection::kReplicated}}) {
    for (const auto& entry : NamedModelWeights(*model, selection)) weight_map[entry.first] = shard;
  }
  ASSERT_TRUE(WriteSafetensorsIndex(dir.Path(kSafetensorsIndexFile), weight_map).ok());
  auto fresh = MakeModel(4);
  const absl::Status s = LoadModelWeights(*fresh, *OpenOrDie(dir.path()));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Snapshot(*fresh), Snapshot(*full));
  EXPECT_EQ(Loss(*fresh), Loss(*full));

  // One rank's expert shard alone is not a whole ep = 1 model.
  const absl::Status partial =
      LoadModelWeights(*fresh, *OpenOrDie(dir.Path("experts-1.safetensors")));
  EXPECT_THAT(std::string(partial.message()), HasSubstr("missing"));
  EXPECT_THAT(std::string(partial.message()), HasSubstr("model.embed_tokens.weight"));
}

}  // namespace
}  // namespace sb
