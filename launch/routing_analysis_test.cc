// RoutingAnalysis on crafted routing whose statistics are known by hand.
#include "launch/routing_analysis.h"

#include <cmath>

#include "gtest/gtest.h"

namespace sb {
namespace {

std::string Piece(int32_t id) { return "t" + std::to_string(id); }

// 2 MoE layers, 4 experts, top-2, tokens [5, 5, 7, 9]. Layer 0 sends token 3's
// second choice (expert 0) nowhere (dropped); layer 1's first choice is a
// function of layer 0's (0 -> 3, 2 -> 1, 1 -> 2).
TEST(RoutingAnalysis, HandCountedCase) {
  RoutingAnalysis a({1, 3}, /*num_experts=*/4, /*top_k=*/2);
  a.Add({5, 5, 7, 9},
        {{0, 1, 0, 1, 2, 3, 1, 0}, {3, 2, 3, 2, 1, 0, 2, 3}},
        {{0, 0, 1, 1, 0, 0, 2, -1}, {0, 0, 1, 1, 0, 0, 0, 0}},
        {1.5, 0.5});
  const nlohmann::json s = a.Summary(2, Piece);
  EXPECT_EQ(s["tokens"], 4);
  ASSERT_EQ(s["layers"].size(), 2u);
  const nlohmann::json& l0 = s["layers"][0];
  EXPECT_EQ(l0["block"], 1);
  EXPECT_EQ(l0["routed"], (std::vector<int64_t>{3, 3, 1, 1}));
  EXPECT_EQ(l0["kept"], (std::vector<int64_t>{2, 3, 1, 1}));
  EXPECT_DOUBLE_EQ(l0["dropped_fraction"].get<double>(), 1.0 / 8);
  EXPECT_DOUBLE_EQ(l0["max_over_mean"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(l0["router_entropy"].get<double>(), 1.5);
  // Pairs {0,1} x3 (tokens 0, 1, 3) and {2,3} x1. Lift of {0,1}: shares
  // (3, 3, 1, 1) / 8, so independent differing draws give
  // 4 pairs * 2 * (3/8)^2 / (1 - 20/64) = 18/11 pairs: lift 3 / (18/11).
  EXPECT_EQ(l0["coselection"][0][1], 3);
  EXPECT_EQ(l0["coselection"][1][0], 3);
  EXPECT_EQ(l0["coselection"][2][3], 1);
  EXPECT_EQ(l0["coselection"][0][2], 0);
  EXPECT_NEAR(l0["coselection_lift"][0][1].get<double>(), 3.0 / (18.0 / 11.0), 1e-12);
  // Most frequent tokens: 5 (twice), then 7 (lower id wins the tie with 9).
  ASSERT_EQ(s["top_tokens"].size(), 2u);
  EXPECT_EQ(s["top_tokens"][0]["id"], 5);
  EXPECT_EQ(s["top_tokens"][0]["piece"], "t5");
  EXPECT_EQ(s["top_tokens"][0]["count"], 2);
  EXPECT_EQ(s["top_tokens"][0]["layers"][1]["first_choice"], (std::vector<int64_t>{0, 0, 0, 2}));
  EXPECT_EQ(s["top_tokens"][0]["layers"][1]["top_expert"], 3);
  EXPECT_DOUBLE_EQ(s["top_tokens"][0]["layers"][1]["top_share"].get<double>(), 1.0);
  EXPECT_EQ(s["top_tokens"][1]["id"], 7);
  // Layer 1's first choice is determined by layer 0's and vice versa.
  const nlohmann::json& agree = s["layer_agreement"];
  EXPECT_NEAR(agree["nmi"][0][1].get<double>(), 1.0, 1e-12);
  EXPECT_NEAR(agree["best_match"][0][1].get<double>(), 1.0, 1e-12);
  EXPECT_NEAR(agree["lambda"][0][1].get<double>(), 1.0, 1e-12);
  EXPECT_NEAR(agree["lambda"][1][0].get<double>(), 1.0, 1e-12);
}

// First choices of two layers independent: (0,0), (0,1), (1,0), (1,1).
TEST(RoutingAnalysis, IndependentLayersAgreeNot) {
  RoutingAnalysis a({0, 1}, /*num_experts=*/2, /*top_k=*/1);
  a.Add({1, 2, 3, 4}, {{0, 0, 1, 1}, {0, 1, 0, 1}}, {{0, 1, 0, 1}, {0, 0, 1, 1}}, {0.7, 0.7});
  const nlohmann::json s = a.Summary(10, Piece);
  EXPECT_NEAR(s["layer_agreement"]["nmi"][0][1].get<double>(), 0.0, 1e-12);
  EXPECT_NEAR(s["layer_agreement"]["lambda"][0][1].get<double>(), 0.0, 1e-12);
  EXPECT_NEAR(s["layer_agreement"]["best_match"][0][1].get<double>(), 0.5, 1e-12);
  EXPECT_FALSE(s["layers"][0].contains("coselection"));  // top-1
  EXPECT_DOUBLE_EQ(s["layers"][0]["load_entropy_ratio"].get<double>(), 1.0);
  EXPECT_EQ(s["top_tokens"].size(), 4u);
}

// Batches accumulate: two Adds equal one Add of the concatenation.
TEST(RoutingAnalysis, BatchesAccumulate) {
  RoutingAnalysis one({0}, 3, 1), two({0}, 3, 1);
  one.Add({1, 2, 2, 1}, {{0, 2, 2, 1}}, {{0, 0, 1, 0}}, {1.0});
  two.Add({1, 2}, {{0, 2}}, {{0, 0}}, {1.0});
  two.Add({2, 1}, {{2, 1}}, {{1, 0}}, {1.0});
  EXPECT_EQ(one.Summary(5, Piece), two.Summary(5, Piece));
}

}  // namespace
}  // namespace sb
