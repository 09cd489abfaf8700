// The KV-cache decoder computes the model's forward pass: its logits equal
// Model::Forward's (f64, to rounding) whether the sequence is fed at once,
// one token at a time, or in uneven chunks; the cached attention op equals
// the training attention op; residual streams handed out are the blocks'
// inputs. Dense, MoE (dropless, renormalised and raw gates) and tied models.
#include "moe/inference/decoder.h"

#include <cmath>

#include "gtest/gtest.h"
#include "moe/core/rng.h"
#include "moe/ops/kv_attention.h"
#include "moe/ops/ops.h"
#include "tests/testing/close.h"
#include "tests/testing/small_model.h"

namespace sb {
namespace {

// Tolerances relative to the reference's largest element (f64 rounding).
void ExpectNear(const Tensor& actual, const Tensor& expected, double rtol, const std::string& what) {
  testing::ExpectRelClose(actual, expected, rtol, what);
}

Tensor Normal(const Shape& shape, uint64_t key) {
  std::vector<double> v(static_cast<size_t>(NumElements(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = NormalAt(key, i);
  return Tensor::FromVector(v, shape);
}

TEST(CachedAttention, EqualsCausalAttentionRows) {
  const int64_t S = 7, H = 4, Hkv = 2, hd = 6;
  const Tensor q = Normal({S, H * hd}, 1), k = Normal({S, Hkv * hd}, 2), v = Normal({S, Hkv * hd}, 3);
  Tensor lse = Tensor::Empty({1, H, S}, DType::kF64), full = Tensor::Empty({S, H * hd}, DType::kF64);
  ops::CausalAttentionForward(q, k, v, static_cast<int>(S), lse, full);
  // Queries [past, S) over the cache [0, S), for every split point.
  for (int64_t past = 0; past < S; ++past) {
    Tensor out = Tensor::Empty({S - past, H * hd}, DType::kF64);
    ops::CachedAttentionForward(q.Rows(past, S), k, v, past, static_cast<int>(H), out);
    ExpectNear(out, full.Rows(past, S), 1e-13, "past " + std::to_string(past));
  }
}

struct Variant {
  const char* name;
  bool moe;
  bool normalize;
  bool tie;
};

class DecoderTest : public ::testing::TestWithParam<Variant> {};

TEST_P(DecoderTest, LogitsEqualFullForward) {
  const Variant& p = GetParam();
  ModelOptions o = testing::SmallModelOptions(p.tie);
  if (!p.moe) o.moe_layers = {false, false, false};
  o.router.normalize_top_k = p.normalize;
  o.router.capacity_factor_eval = 0;  // dropless: routing independent of how tokens are grouped
  Model model(o, nullptr, DType::kF64, Device::kCpu);
  model.InitWeights(7);
  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};
  const int64_t S = static_cast<int64_t>(tokens.size());
  Tensor inputs = Tensor::FromVector(tokens, {1, S});
  StepContext ctx;
  ctx.training = false;
  model.Forward(inputs, inputs, ctx);
  Tensor expected = Tensor::Empty(model.logits().shape(), DType::kF64);
  ops::Copy(model.logits(), expected);

  Decoder all(model, o.max_seq_len);
  ExpectNear(all.Append(tokens), expected, 1e-12, "whole sequence");
  EXPECT_EQ(all.length(), S);

  Decoder one(model, S);
  for (int64_t t = 0; t < S; ++t) {
    ExpectNear(one.Append({tokens[t]}), expected.Rows(t, t + 1), 1e-12, "token " + std::to_string(t));
  }
  // Uneven chunks after a reset reuse the cache.
  one.Reset();
  int64_t at = 0;
  for (int64_t chunk : {5, 1, 4, 2}) {
    std::vector<int32_t> part(tokens.begin() + at, tokens.begin() + at + chunk);
    ExpectNear(one.Append(part), expected.Rows(at, at + chunk), 1e-12, "chunk at " + std::to_string(at));
    at += chunk;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, DecoderTest,
                         ::testing::Values(Variant{"dense", false, false, false},
                                           Variant{"moe_renormalised", true, true, false},
                                           Variant{"moe_raw_gates_tied", true, false, true}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Decoder, BlockInputsAreTheResidualStream) {
  ModelOptions o = testing::SmallModelOptions(false);
  o.moe_layers = {false, false, false};
  Model model(o, nullptr, DType::kF64, Device::kCpu);
  model.InitWeights(3);
  Decoder d(model, 8);
  std::vector<Tensor> inputs;
  d.Append({1, 2, 3}, &inputs);
  ASSERT_EQ(inputs.size(), 3u);
  // Block 0's input is the embedding of the tokens.
  Tensor emb = Tensor::Empty({3, o.d_model}, DType::kF64);
  ops::EmbeddingForward(Tensor::FromVector<int32_t>({1, 2, 3}, {3}), model.Parameters()[0]->value, emb);
  ExpectNear(inputs[0], emb, 0.0, "block 0 input");
  for (const Tensor& t : inputs) EXPECT_EQ(t.shape(), (Shape{3, o.d_model}));
}

}  // namespace
}  // namespace sb
