// Hugging Face interchange against transformers itself (tests/golden/hf/,
// written by transformers 5.24's save_pretrained; logits computed by
// transformers from the saved files: tests/reference/make_hf_golden.py):
//   - import: Llama in f32, bf16 (tied) and f16 (sharded), Mixtral in the
//     published per-expert layout and transformers 5's fused layout, give
//     transformers' logits (and router logits);
//   - function preservation: upcycling the dense Llama to an MoE with
//     renormalised top-k and no dropping gives LlamaForCausalLM's logits
//     (and our dense model's to f64 rounding), also interleaved and tied;
//     raw gates scale each token's FFN by the sum of its chosen gates;
//   - frankenMoE: expert e is donor e's FFN; hidden-state router init reads
//     the residual stream transformers reports (output_hidden_states);
//   - export round trip: our export has the names, values and config that
//     transformers wrote, and loading it back gives transformers' logits.
// Tolerances: the references are float32 (transformers' own computation);
// our f64 forward differs by their rounding, so |ours - ref| <= 1e-5 *
// max|ref| (about 80 float32 ulps of the largest logit; measured ~1e-6).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/export_hf.h"
#include "launch/hf_convert.h"
#include "launch/model_factory.h"
#include "launch/model_source.h"
#include "launch/router_prompts.h"
#include "launch/upcycle.h"
#include "moe/io/hf_checkpoint.h"
#include "moe/io/model_weights.h"
#include "moe/io/safetensors.h"
#include "moe/layers/swiglu_mlp.h"
#include "moe/ops/ops.h"
#include "tests/testing/close.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr double kRefTol = 1e-5;  // relative to max |reference| (float32 reference)

std::string Golden(const std::string& name) {
  const char* src = std::getenv("SB_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/golden/hf/" + name;
}

Tensor GoldenTensor(const std::string& name) {
  auto file = SafetensorsFile::Open(Golden("logits.safetensors"));
  SB_CHECK(file.ok()) << file.status();
  auto info = (*file)->Info(name);
  SB_CHECK(info.ok()) << info.status();
  Tensor t = Tensor::Empty(info->shape, info->dtype == SafetensorsDType::kI32 ? DType::kI32 : DType::kF64);
  SB_CHECK((*file)->ReadInto(name, t).ok());
  return t;
}

double ExpectClose(const Tensor& actual, const Tensor& expected, double rtol, const std::string& what) {
  return testing::ExpectRelClose(actual, expected, rtol, what);
}

// Logits [B*S, V] of the golden tokens.
Tensor Logits(Model& model) {
  const Tensor tokens = GoldenTensor("tokens");
  StepContext ctx;
  ctx.training = false;
  model.Forward(tokens, tokens, ctx);
  Tensor out = Tensor::Empty(model.logits().shape(), DType::kF64);
  ops::Convert(model.logits(), out);
  return out;
}

std::unique_ptr<Model> LoadDir(const std::string& dir, DType dtype = DType::kF64) {
  auto source = OpenModelSource(dir);
  SB_CHECK(source.ok()) << source.status();
  auto model = LoadSourceModel(*source, dtype);
  SB_CHECK(model.ok()) << model.status();
  return *std::move(model);
}

// The MoE config for upcycling a golden Llama (d 32, 4 heads / 2 kv, FFN 48, 2 layers).
TrainConfig MoeConfig(const std::string& dense_dir, int interval, bool normalize, double cf_eval) {
  auto hf = ReadHfConfig(Golden(dense_dir) + "/config.json");
  SB_CHECK(hf.ok()) << hf.status();
  TrainConfig c = TrainConfigFromHf(*hf);
  c.mutable_model()->set_expert_ffn_dim(hf->intermediate_size);
  auto* moe = c.mutable_moe();
  moe->set_moe_layer_interval(interval);
  moe->set_num_experts(4);
  moe->set_top_k(2);
  moe->set_normalize_top_k(normalize);
  moe->set_capacity_factor_eval(cf_eval);
  moe->set_capacity_factor_train(cf_eval);
  c.mutable_upcycle()->set_router_init_std(1.0);  // decisive, non-trivial routing
  return ResolvedConfig(c);
}

TEST(HfImport, LlamaLogitsMatchTransformers) {
  for (const char* dir : {"llama_f32", "llama_bf16_tied", "llama_f16_sharded"}) {
    auto model = LoadDir(Golden(dir));
    const double err = ExpectClose(Logits(*model), GoldenTensor(absl::StrCat("logits.", dir)), kRefTol, dir);
    std::printf("[hf import] %-18s logits max rel err %.2e\n", dir, err);
  }
}

TEST(HfImport, MixtralPerExpertAndFusedLayoutsMatchTransformers) {
  auto legacy = HfCheckpoint::Open(Golden("mixtral"));
  auto fused = HfCheckpoint::Open(Golden("mixtral_fused"));
  ASSERT_TRUE(legacy.ok()) << legacy.status();
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_FALSE((*legacy)->fused_experts());
  EXPECT_TRUE((*fused)->fused_experts());
  ASSERT_EQ((*legacy)->names(), (*fused)->names());
  for (const std::string& name : (*legacy)->names()) {  // the same tensors, bit for bit
    auto info = (*legacy)->Info(name);
    Tensor a = Tensor::Empty(info->shape), b = Tensor::Empty(info->shape);
    ASSERT_TRUE((*legacy)->ReadInto(name, a).ok());
    ASSERT_TRUE((*fused)->ReadInto(name, b).ok()) << name;
    ASSERT_EQ(0, std::memcmp(a.raw(), b.raw(), a.nbytes())) << name;
  }
  for (const char* dir : {"mixtral", "mixtral_fused"}) {
    auto model = LoadDir(Golden(dir));
    const double err = ExpectClose(Logits(*model), GoldenTensor(absl::StrCat("logits.", dir)), kRefTol, dir);
    std::vector<MoeLayer*> layers = model->MoeLayers();
    const Tensor ref = GoldenTensor(absl::StrCat("router_logits.", dir));
    const int64_t T = ref.dim(0) / static_cast<int64_t>(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      ExpectClose(layers[l]->router().logits(), ref.Rows(l * T, (l + 1) * T), kRefTol,
                  absl::StrCat(dir, " router logits layer ", l));
    }
    std::printf("[hf import] %-18s logits max rel err %.2e\n", dir, err);
  }
}

TEST(Upcycle, RenormalisedDroplessIsLlamaForCausalLM) {
  struct Case {
    const char* dir;
    int interval;
  };
  for (const Case& c : {Case{"llama_f32", 1}, Case{"llama_f32", 2}, Case{"llama_bf16_tied", 1},
                        Case{"llama_f16_sharded", 1}}) {
    const std::string what = absl::StrCat(c.dir, " interval ", c.interval);
    UpcycleOptions options;
    options.from = Golden(c.dir);
    auto up = Upcycle(MoeConfig(c.dir, c.interval, true, 0), "moe config", options, DType::kF64);
    ASSERT_TRUE(up.ok()) << up.status();
    const Tensor moe = Logits(*up->model);
    // Routing is not trivial: tokens spread over the experts.
    for (MoeLayer* layer : up->model->MoeLayers()) {
      int used = 0;
      for (int64_t n : layer->stats().routed) used += n > 0;
      EXPECT_GE(used, 3) << what;
    }
    const double err = ExpectClose(moe, GoldenTensor(absl::StrCat("logits.", c.dir)), kRefTol, what);
    auto dense = LoadDir(Golden(c.dir));
    ExpectClose(moe, Logits(*dense), 1e-13, what + " vs our dense model");
    std::printf("[function preservation] %-30s vs LlamaForCausalLM max rel err %.2e\n", what.c_str(), err);
  }
}

TEST(Upcycle, RawGatesScaleTheFfnByTheChosenGatesAndCapacityDrops) {
  UpcycleOptions options;
  options.from = Golden("llama_f32");
  auto up = Upcycle(MoeConfig("llama_f32", 1, /*normalize=*/false, 0), "moe", options, DType::kF64);
  ASSERT_TRUE(up.ok()) << up.status();
  Model& model = *up->model;
  const Tensor raw = Logits(model);
  auto dense = LoadDir(Golden("llama_f32"));
  const std::vector<double> a = raw.ToDoubles(), b = Logits(*dense).ToDoubles();
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
  EXPECT_GT(diff, 1e-3) << "raw gates should change the function";
  // Per token: MoE(x) = (g_1 + g_2) * FFN(x), FFN the dense MLP every expert copies.
  MoeLayer* layer = model.MoeLayers()[0];
  const int64_t T = 6, D = 32, F = 48;
  std::vector<double> xs(T * D);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = std::sin(0.37 * static_cast<double>(i));
  const Tensor x = Tensor::FromVector(xs, {T, D});
  StepContext ctx;
  ctx.training = false;
  Tensor y = Tensor::Empty({T, D}, DType::kF64);
  ops::Copy(layer->Forward(x, ctx), y);
  const Experts& e = layer->experts();
  const SwigluActivations acts{Tensor::Empty({T, F}, DType::kF64), Tensor::Empty({T, F}, DType::kF64),
                               Tensor::Empty({T, F}, DType::kF64)};
  Tensor ffn = Tensor::Empty({T, D}, DType::kF64);
  SwigluMlpForward(x, e.w1.value.Rows(0, 1).Reshape({F, D}), e.w3.value.Rows(0, 1).Reshape({F, D}),
                   e.w2.value.Rows(0, 1).Reshape({D, F}), acts, ffn);
  const std::vector<double> gates = layer->router().routing().gates.ToDoubles();
  std::vector<double> expected = ffn.ToDoubles();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < D; ++d) expected[t * D + d] *= gates[t * 2] + gates[t * 2 + 1];
  ExpectClose(y, Tensor::FromVector(expected, {T, D}), 1e-13, "raw-gate MoE = (g1 + g2) FFN");

  // Capacity: with factor 0.5 and min_capacity 0 some choices drop and their tokens lose that share.
  TrainConfig capped = MoeConfig("llama_f32", 1, true, 0.5);
  capped.mutable_moe()->set_min_capacity(0);
  auto up2 = Upcycle(capped, "moe", options, DType::kF64);
  ASSERT_TRUE(up2.ok()) << up2.status();
  Logits(*up2->model);
  EXPECT_GT(up2->model->MoeLayers()[0]->stats().dropped_fraction, 0.0);
}

TEST(Upcycle, ExpertsComeFromTheirDonors) {
  UpcycleOptions options;
  options.from = Golden("llama_f16_sharded");
  options.expert_from = {Golden("llama_bf16_tied"), Golden("llama_f16_sharded"),
                         Golden("llama_bf16_tied"), Golden("llama_f16_sharded")};
  auto up = Upcycle(MoeConfig("llama_f16_sharded", 1, true, 0), "moe", options, DType::kF32);
  ASSERT_TRUE(up.ok()) << up.status();
  for (int e = 0; e < 4; ++e) {
    auto donor = HfCheckpoint::Open(options.expert_from[e]);
    ASSERT_TRUE(donor.ok());
    for (int layer = 0; layer < 2; ++layer) {
      for (auto [ours, theirs] : {std::pair{"w1", "gate_proj"}, std::pair{"w3", "up_proj"},
                                  std::pair{"w2", "down_proj"}}) {
        const std::string dense = absl::StrCat("model.layers.", layer, ".mlp.", theirs, ".weight");
        auto info = (*donor)->Info(dense);
        Tensor want = Tensor::Empty(info->shape);
        ASSERT_TRUE((*donor)->ReadInto(dense, want).ok());
        const std::string name =
            absl::StrCat("model.layers.", layer, ".block_sparse_moe.experts.", e, ".", ours, ".weight");
        for (const auto& [n, view] : NamedModelWeights(*up->model)) {
          if (n == name) {
            EXPECT_EQ(0, std::memcmp(view.raw(), want.raw(), want.nbytes())) << name;
          }
        }
      }
    }
  }
  // Attention and norms are the base's.
  auto base = HfCheckpoint::Open(options.from);
  Tensor q = Tensor::Empty({32, 32});
  ASSERT_TRUE((*base)->ReadInto("model.layers.1.self_attn.q_proj.weight", q).ok());
  for (const auto& [n, view] : NamedModelWeights(*up->model)) {
    if (n == "model.layers.1.self_attn.q_proj.weight") {
      EXPECT_EQ(0, std::memcmp(view.raw(), q.raw(), q.nbytes()));
    }
  }
}

TEST(Upcycle, HiddenStatesAreTransformersResidualStream) {
  auto dense = LoadDir(Golden("llama_f32"));
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i) {
    const std::vector<double> ids = GoldenTensor(absl::StrCat("prompt.", i)).ToDoubles();
    prompts.emplace_back(ids.begin(), ids.end());
  }
  auto states = LastTokenStates(*dense, prompts);
  ASSERT_TRUE(states.ok()) << states.status();
  for (int i = 0; i < 3; ++i) {
    ExpectClose((*states)[i], GoldenTensor(absl::StrCat("hidden.llama_f32.", i)), kRefTol,
                absl::StrCat("prompt ", i));
  }
  // Router rows: unit vectors along the positive mean minus the negative mean.
  const std::vector<Tensor> rows = RouterRowsFromStates({{(*states)[0], (*states)[1]}, {(*states)[2]}},
                                                        {{}, {(*states)[0]}});
  ASSERT_EQ(rows.size(), 2u);
  for (int l = 0; l < 2; ++l) {
    const std::vector<double> r = rows[l].ToDoubles(), s0 = (*states)[0].ToDoubles(),
                              s1 = (*states)[1].ToDoubles(), s2 = (*states)[2].ToDoubles();
    double norm0 = 0, norm1 = 0;
    std::vector<double> want0(32), want1(32);
    for (int d = 0; d < 32; ++d) {
      want0[d] = (s0[l * 32 + d] + s1[l * 32 + d]) / 2;
      want1[d] = s2[l * 32 + d] - s0[l * 32 + d];
      norm0 += want0[d] * want0[d];
      norm1 += want1[d] * want1[d];
    }
    for (int d = 0; d < 32; ++d) {
      EXPECT_NEAR(r[d], want0[d] / std::sqrt(norm0), 1e-14);
      EXPECT_NEAR(r[32 + d], want1[d] / std::sqrt(norm1), 1e-14);
    }
  }
}

TEST(Upcycle, DisagreementsNameBothValues) {
  UpcycleOptions options;
  options.from = Golden("llama_f32");
  TrainConfig c = MoeConfig("llama_f32", 1, true, 0);
  c.mutable_model()->set_d_model(64);
  c.mutable_model()->set_expert_ffn_dim(96);
  c.mutable_model()->set_rope_theta(10000);
  auto up = Upcycle(c, "moe.textproto", options, DType::kF32);
  ASSERT_FALSE(up.ok());
  EXPECT_THAT(up.status().message(), HasSubstr("model.d_model [hidden_size] = 32 in "));
  EXPECT_THAT(up.status().message(), HasSubstr("64 in moe.textproto"));
  EXPECT_THAT(up.status().message(), HasSubstr("model.expert_ffn_dim (0 = ffn_dim) [intermediate_size] = 48"));
  EXPECT_THAT(up.status().message(), HasSubstr("model.rope_theta [rope_theta] = 500000"));
  // A donor of another architecture (rope_theta 5e5 vs the base's 1e4).
  options.from = Golden("llama_f16_sharded");
  options.expert_from = {Golden("llama_f16_sharded"), Golden("llama_f32"), Golden("llama_f16_sharded"),
                         Golden("llama_f16_sharded")};
  up = Upcycle(MoeConfig("llama_f16_sharded", 1, true, 0), "moe", options, DType::kF32);
  ASSERT_FALSE(up.ok());
  EXPECT_THAT(up.status().message(), HasSubstr("--expert_from (expert 1) does not match the base"));
  EXPECT_THAT(up.status().message(), HasSubstr("rope_theta [rope_theta] = 500000"));
  options.expert_from.pop_back();
  up = Upcycle(MoeConfig("llama_f16_sharded", 1, true, 0), "moe", options, DType::kF32);
  ASSERT_FALSE(up.ok());
  EXPECT_THAT(up.status().message(), HasSubstr("--expert_from given 3 times, moe.num_experts = 4"));
  // A Mixtral is not a dense base.
  options.from = Golden("mixtral");
  options.expert_from.clear();
  up = Upcycle(MoeConfig("llama_f16_sharded", 1, true, 0), "moe", options, DType::kF32);
  ASSERT_FALSE(up.ok());
  EXPECT_THAT(up.status().message(), HasSubstr("already a mixture of experts"));
}

// Every tensor of `dir`'s files (name -> raw bytes and dtype).
std::map<std::string, std::pair<SafetensorsDType, std::string>> FileTensors(const std::string& dir) {
  auto set = SafetensorsSet::Open(dir);
  SB_CHECK(set.ok()) << set.status();
  std::map<std::string, std::pair<SafetensorsDType, std::string>> out;
  for (const std::string& name : (*set)->names()) {
    auto info = (*set)->Info(name);
    Tensor t = Tensor::Empty(info->shape, DType::kF32);
    SB_CHECK((*set)->ReadInto(name, t).ok());
    out[name] = {info->dtype, std::string(static_cast<const char*>(t.raw()), t.nbytes())};
  }
  return out;
}

TEST(ExportHf, RoundTripGivesTransformersFilesAndLogits) {
  testing::TempDir tmp;
  struct Case {
    const char* dir;
    const char* dtype;
    int64_t shard_bytes;
  };
  for (const Case& c : {Case{"mixtral", "float32", kDefaultMaxShardBytes},
                        Case{"mixtral_fused", "float32", 30000},
                        Case{"llama_bf16_tied", "bfloat16", kDefaultMaxShardBytes},
                        Case{"llama_f16_sharded", "float32", 20000}}) {
    auto source = OpenModelSource(Golden(c.dir));
    ASSERT_TRUE(source.ok()) << source.status();
    auto model = LoadSourceModel(*source, DType::kF32);
    ASSERT_TRUE(model.ok());
    ExportHfOptions options;
    options.out = tmp.Path(c.dir);
    options.dtype = c.dtype;
    options.max_shard_bytes = c.shard_bytes;
    ASSERT_TRUE(ExportHf(**model, source->config, "", options).ok()) << c.dir;
    // config.json: what transformers wrote, in the fields that define the model.
    auto ours = ReadHfConfig(options.out + "/config.json");
    auto theirs = ReadHfConfig(Golden(c.dir) + "/config.json");
    ASSERT_TRUE(ours.ok()) << ours.status();
    EXPECT_EQ(HfConfigJson(*ours), HfConfigJson([&] {
                HfConfig t = *theirs;
                t.dtype = c.dtype;
                t.bos_token_id = t.eos_token_id = -1;  // no tokenizer given to the export
                return t;
              }()))
        << c.dir;
    // Weights: the published names (per-expert Mixtral even from the fused
    // layout) with the same values; bf16 of a bf16 source is bitwise the source.
    const std::string reference = std::string(c.dir) == "mixtral_fused" ? "mixtral" : c.dir;
    auto a = FileTensors(options.out), b = FileTensors(Golden(reference));
    ASSERT_EQ(a.size(), b.size()) << c.dir;
    for (const auto& [name, value] : b) {
      ASSERT_TRUE(a.count(name)) << c.dir << " lacks " << name;
      EXPECT_EQ(a[name].second, value.second) << c.dir << " " << name;
    }
    EXPECT_EQ(fs::exists(options.out + "/model.safetensors.index.json"),
              c.shard_bytes < kDefaultMaxShardBytes) << c.dir;
    auto back = LoadDir(options.out);
    const double err = ExpectClose(Logits(*back), GoldenTensor(absl::StrCat("logits.", c.dir)), kRefTol,
                                   absl::StrCat(c.dir, " exported"));
    std::printf("[export round trip] %-18s %s: logits max rel err %.2e vs transformers\n", c.dir, c.dtype, err);
  }
}

TEST(ExportHf, RefusesWhatTransformersCannotRepresent) {
  TrainConfig c = MoeConfig("llama_f32", 2, false, 2.0);
  auto hf = HfConfigFromTrainConfig(c, "float32");
  ASSERT_FALSE(hf.ok());
  EXPECT_THAT(hf.status().message(), HasSubstr("interleaved dense and MoE blocks"));
  EXPECT_THAT(hf.status().message(), HasSubstr("moe.normalize_top_k = false"));
  EXPECT_THAT(hf.status().message(), HasSubstr("moe.capacity_factor_eval = 2"));
  c = MoeConfig("llama_f32", 1, true, 0);
  c.mutable_moe()->set_z_loss_coef(0.01);  // training-only: fine
  EXPECT_TRUE(HfConfigFromTrainConfig(c, "float32").ok());
}

}  // namespace
}  // namespace sb
