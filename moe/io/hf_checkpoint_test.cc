// Bad Hugging Face input, each giving a clear error (file, tensor or key,
// and both values where there are two) and never a crash: missing tensors,
// wrong shapes, integer and unsupported dtypes, truncated and missing
// shards, leftover tensors, config.json keys we do not implement, configs
// that disagree with the weights. Starts from the directories transformers
// wrote (tests/golden/hf/) and breaks one thing at a time. Also: both
// config.json spellings (transformers 4 and 5) and the writer round trip.
#include "moe/io/hf_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moe/io/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"

namespace sb {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;
using json = nlohmann::json;

std::string Golden(const std::string& name) {
  const char* src = std::getenv("SB_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/golden/hf/" + name;
}

class HfInput : public ::testing::Test {
 protected:
  // A copy of a golden directory to break.
  std::string Copy(const std::string& golden) {
    const std::string dir = tmp_.Path(golden + "_" + std::to_string(copies_++));
    fs::copy(Golden(golden), dir, fs::copy_options::recursive);
    return dir;
  }
  // Rewrites dir/model.safetensors after `edit` changed its tensors.
  void Rewrite(const std::string& dir,
               const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
    const std::string path = dir + "/model.safetensors";
    std::vector<std::pair<std::string, Tensor>> tensors;
    {
      auto file = SafetensorsFile::Open(path);
      ASSERT_TRUE(file.ok()) << file.status();
      for (const std::string& name : (*file)->names()) {
        Tensor t = Tensor::Empty((*file)->Find(name)->shape, DType::kF32);
        ASSERT_TRUE((*file)->ReadInto(name, t).ok());
        tensors.emplace_back(name, t);
      }
    }
    edit(tensors);
    ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());
  }
  void EditConfig(const std::string& dir, const std::function<void(json&)>& edit) {
    std::ifstream in(dir + "/config.json");
    json j = json::parse(in);
    edit(j);
    std::ofstream(dir + "/config.json") << j.dump(2);
  }
  // Opening `dir` fails with InvalidArgument (or `code`) and every part in the message.
  void ExpectRejected(const std::string& dir, const std::vector<std::string>& parts,
                      absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
    auto ckpt = HfCheckpoint::Open(dir);
    ASSERT_FALSE(ckpt.ok()) << dir << " was accepted";
    EXPECT_EQ(ckpt.status().code(), code) << ckpt.status();
    for (const std::string& part : parts) EXPECT_THAT(ckpt.status().message(), HasSubstr(part));
  }
  testing::TempDir tmp_;
  int copies_ = 0;
};

TEST_F(HfInput, GoldenDirectoriesOpen) {
  for (const char* dir : {"llama_f32", "llama_bf16_tied", "llama_f16_sharded", "mixtral", "mixtral_fused"}) {
    auto ckpt = HfCheckpoint::Open(Golden(dir));
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  }
  auto llama = HfCheckpoint::Open(Golden("llama_f32"));
  EXPECT_EQ((*llama)->config().rope_theta, 5e5);
  EXPECT_EQ((*llama)->config().dtype, "float32");
  EXPECT_EQ((*llama)->names().size(), 2u + 1 + 2 * 9);  // embed, norm, head; 9 per layer
  EXPECT_EQ((*HfCheckpoint::Open(Golden("llama_bf16_tied")))->names().size(), 2u + 2 * 9);
}

TEST_F(HfInput, MissingTensor) {
  const std::string dir = Copy("llama_f32");
  Rewrite(dir, [](auto& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](const auto& e) { return e.first == "model.layers.1.mlp.up_proj.weight"; }),
            t.end());
  });
  ExpectRejected(dir, {dir, "1 missing: model.layers.1.mlp.up_proj.weight"});
}

TEST_F(HfInput, WrongShapeNamesBothShapes) {
  const std::string dir = Copy("llama_f32");
  Rewrite(dir, [](auto& t) {
    for (auto& e : t)
      if (e.first == "model.layers.0.self_attn.q_proj.weight") e.second = Tensor::Zeros({16, 32});
  });
  ExpectRejected(dir, {"model.layers.0.self_attn.q_proj.weight is [16, 32], config.json implies [32, 32]",
                       "4 heads of 8"});
}

TEST_F(HfInput, ConfigDisagreeingWithWeightsNamesBoth) {
  const std::string dir = Copy("llama_f32");
  EditConfig(dir, [](json& j) { j["intermediate_size"] = 64; });
  ExpectRejected(dir, {"model.layers.0.mlp.gate_proj.weight is [48, 32], config.json implies [64, 32] "
                       "(intermediate_size 64, hidden_size 32)"});
}

TEST_F(HfInput, IntegerAndUnsupportedDtypes) {
  std::string dir = Copy("llama_f32");
  Rewrite(dir, [](auto& t) {
    for (auto& e : t)
      if (e.first == "model.norm.weight") e.second = Tensor::Zeros({32}, DType::kI32);
  });
  ExpectRejected(dir, {"model.norm.weight has dtype I32 (weights must be F32, F16, BF16 or F64)"});
  // An 8-bit float (what quantised checkpoints hold) is refused by name.
  dir = tmp_.Path("f8");
  fs::copy(Golden("llama_f32"), dir, fs::copy_options::recursive);
  const std::string header = R"({"model.norm.weight":{"dtype":"F8_E4M3","shape":[32],"data_offsets":[0,32]}})";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(uint64_t{header.size()} >> (8 * i));
  testing::WriteBytes(dir + "/model.safetensors", bytes + header + std::string(32, '\0'));
  ExpectRejected(dir, {"model.safetensors", "F8_E4M3"});
}

TEST_F(HfInput, TruncatedAndMissingFiles) {
  std::string dir = Copy("llama_f32");
  const std::string bytes = testing::ReadBytes(dir + "/model.safetensors");
  testing::WriteBytes(dir + "/model.safetensors", bytes.substr(0, bytes.size() - 100));
  ExpectRejected(dir, {dir + "/model.safetensors"});
  dir = Copy("llama_f16_sharded");
  fs::remove(dir + "/model-00002-of-00002.safetensors");
  ExpectRejected(dir, {"model.safetensors.index.json", "model-00002-of-00002.safetensors"},
                 absl::StatusCode::kNotFound);
  dir = Copy("mixtral");
  fs::remove(dir + "/config.json");
  ExpectRejected(dir, {"not a Hugging Face model directory (no config.json)"}, absl::StatusCode::kNotFound);
  dir = Copy("mixtral");
  fs::rename(dir + "/model.safetensors", dir + "/pytorch_model.bin");
  ExpectRejected(dir, {"pytorch_model.bin (pickle), which is not read"});
}

TEST_F(HfInput, LeftoverTensorsAreRefusedButKnownBuffersIgnored) {
  std::string dir = Copy("llama_f32");
  Rewrite(dir, [](auto& t) { t.emplace_back("model.layers.0.self_attn.q_proj.bias", Tensor::Zeros({32})); });
  ExpectRejected(dir, {"1 unexpected", "model.layers.0.self_attn.q_proj.bias"});
  // transformers < 4.31 buffers and the head of a tied model are ignored.
  dir = Copy("llama_bf16_tied");
  Rewrite(dir, [](auto& t) {
    t.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor::Zeros({4}));
    t.emplace_back("lm_head.weight", Tensor::Zeros({64, 32}));
  });
  EXPECT_TRUE(HfCheckpoint::Open(dir).ok());
}

TEST_F(HfInput, FusedExpertsWithAWrongShape) {
  const std::string dir = Copy("mixtral_fused");
  Rewrite(dir, [](auto& t) {
    for (auto& e : t)
      if (e.first == "model.layers.1.mlp.experts.gate_up_proj") e.second = Tensor::Zeros({4, 16, 32});
  });
  ExpectRejected(dir, {"model.layers.1.mlp.experts.gate_up_proj is [4, 16, 32], config.json implies [4, 32, 32]"});
}

TEST_F(HfInput, ConfigKeysWeDoNotImplement) {
  struct Bad {
    std::function<void(json&)> edit;
    std::string message;
  };
  const std::vector<Bad> cases = {
      {[](json& j) { j["model_type"] = "gpt2"; }, "model_type = \"gpt2\" is not supported (llama or mixtral)"},
      {[](json& j) { j.erase("model_type"); }, "model_type is missing"},
      {[](json& j) { j.erase("hidden_size"); }, "hidden_size is missing"},
      {[](json& j) { j["hidden_size"] = "32"; }, "hidden_size = \"32\" must be a positive integer"},
      {[](json& j) { j["num_hidden_layers"] = 0; }, "num_hidden_layers = 0 must be a positive integer"},
      {[](json& j) { j["hidden_act"] = "gelu"; }, "hidden_act = \"gelu\": only \"silu\""},
      {[](json& j) { j["attention_bias"] = true; }, "attention_bias = true: attention biases are not supported"},
      {[](json& j) { j["mlp_bias"] = true; }, "mlp_bias = true: MLP biases are not supported"},
      {[](json& j) { j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 5e5}, {"factor", 8}}; },
       "rope_parameters.rope_type = \"llama3\": only unscaled RoPE"},
      {[](json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; },
       "rope_scaling.type = \"linear\""},
      {[](json& j) { j["head_dim"] = 16; }, "head_dim = 16 differs from hidden_size / num_attention_heads = 8"},
      {[](json& j) { j["num_key_value_heads"] = 3; }, "num_attention_heads = 4 is not divisible by num_key_value_heads = 3"},
      {[](json& j) { j["sliding_window"] = 16; }, "sliding_window = 16: sliding-window attention is not supported"},
      {[](json& j) { j["quantization_config"] = {{"quant_method", "gptq"}}; }, "quantized checkpoints are not supported"},
      {[](json& j) { j["rms_norm_eps"] = -1; }, "rms_norm_eps = -1 must be a positive number"},
  };
  for (const Bad& bad : cases) {
    const std::string dir = tmp_.Path("cfg");
    fs::remove_all(dir);
    fs::copy(Golden("llama_f32"), dir, fs::copy_options::recursive);
    EditConfig(dir, bad.edit);
    ExpectRejected(dir, {dir + "/config.json", bad.message});
  }
  const std::string dir = tmp_.Path("garbled");
  fs::copy(Golden("llama_f32"), dir, fs::copy_options::recursive);
  testing::WriteBytes(dir + "/config.json", "{\"model_type\": \"llama\",");
  ExpectRejected(dir, {dir + "/config.json"});
}

TEST(HfConfig, BothSpellingsAndTheWriterRoundTrip) {
  // transformers 4.x: rope_theta and torch_dtype at the top.
  auto v4 = ParseHfConfig("v4", R"({"model_type": "mixtral", "vocab_size": 100, "hidden_size": 64,
      "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
      "rope_theta": 1e6, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16", "num_local_experts": 8,
      "num_experts_per_tok": 2, "router_aux_loss_coef": 0.02, "sliding_window": null, "eos_token_id": [2, 7]})");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->rope_theta, 1e6);
  EXPECT_EQ(v4->dtype, "bfloat16");
  EXPECT_EQ(v4->eos_token_id, 2);
  EXPECT_EQ(v4->num_local_experts, 8);
  // transformers 5: rope_parameters, dtype; defaults for absent optional keys.
  auto v5 = ParseHfConfig("v5", R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
      "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 8,
      "rope_parameters": {"rope_type": "default", "rope_theta": 250000.0}, "dtype": "float32"})");
  ASSERT_TRUE(v5.ok()) << v5.status();
  EXPECT_EQ(v5->rope_theta, 250000.0);
  EXPECT_EQ(v5->num_key_value_heads, 8);
  EXPECT_EQ(v5->rms_norm_eps, 1e-6);
  EXPECT_FALSE(v5->tie_word_embeddings);
  for (const HfConfig& c : {*v4, *v5}) {
    auto again = ParseHfConfig("written", HfConfigJson(c));
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(HfConfigJson(*again), HfConfigJson(c));
  }
}

}  // namespace
}  // namespace sb
