// DeepSeek-V3's pieces on hand-made cases: the noaux_tc router (group masking, the correction bias
// used only to choose, normalisation and scaling), YaRN's inv_freq and attention factor against
// the formula written out here, and the CPU backend's interleaved rope.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "backends/cpu_backend.hpp"
#include "models/moe.hpp"
#include "models/rope.hpp"

namespace troupe {
namespace {

float logit(float s) { return std::log(s / (1.0f - s)); }

MoeConfig router_config() {
  MoeConfig moe;
  moe.n_routed_experts = 8;
  moe.num_experts_per_tok = 2;
  moe.n_group = 4;  // groups {0,1} {2,3} {4,5} {6,7}
  moe.topk_group = 2;
  moe.routed_scaling_factor = 2.5;
  moe.norm_topk_prob = true;
  return moe;
}

TEST(DeepseekMoeRouting, GroupMaskingBiasOnlyInSelectionNormAndScaling) {
  // Scores s; the bias lifts expert 3 from 0.55 to 0.95 in the choice only.
  const std::vector<float> s = {0.9f, 0.1f, 0.6f, 0.55f, 0.45f, 0.5f, 0.92f, 0.02f};
  std::vector<float> logits;
  for (float v : s) logits.push_back(logit(v));
  std::vector<float> bias(8, 0.0f);
  bias[3] = 0.4f;
  // Group scores (top-2 sums of s + bias): 1.0, 1.55, 0.95, 0.94 -> groups 1 and 0 kept, so expert 6
  // (s = 0.92, better than expert 0's 0.9) is masked with its group.
  MoeConfig moe = router_config();
  MoeRouting r = route_tokens(logits.data(), 1, bias, moe);
  ASSERT_EQ(r.experts, (std::vector<int32_t>{3, 0}));
  // Weights are s (0.55, not 0.95), normalised over the chosen, times routed_scaling_factor.
  EXPECT_NEAR(r.weights[0], 0.55f / 1.45f * 2.5f, 1e-5f);
  EXPECT_NEAR(r.weights[1], 0.9f / 1.45f * 2.5f, 1e-5f);

  moe.norm_topk_prob = false;
  r = route_tokens(logits.data(), 1, bias, moe);
  ASSERT_EQ(r.experts, (std::vector<int32_t>{3, 0}));
  EXPECT_NEAR(r.weights[0], 0.55f * 2.5f, 1e-5f);
  EXPECT_NEAR(r.weights[1], 0.9f * 2.5f, 1e-5f);

  // Without the bias expert 2 (0.6) beats expert 3; all groups kept: expert 6 wins.
  moe.norm_topk_prob = true;
  r = route_tokens(logits.data(), 1, std::vector<float>(8, 0.0f), moe);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 2}));
  moe.topk_group = 4;
  r = route_tokens(logits.data(), 1, std::vector<float>(8, 0.0f), moe);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{6, 0}));
}

TEST(DeepseekMoeRouting, TokensAreRoutedIndependently) {
  const MoeConfig moe = router_config();
  std::vector<float> logits(16, logit(0.1f));
  logits[5] = logit(0.8f);
  logits[4] = logit(0.7f);  // token 0: group 2 holds the two best
  logits[8 + 1] = logit(0.8f);
  logits[8 + 7] = logit(0.7f);  // token 1: one in group 0, one in group 3
  const MoeRouting r = route_tokens(logits.data(), 2, std::vector<float>(8, 0.0f), moe);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{5, 4, 1, 7}));
  EXPECT_NEAR(r.weights[0] + r.weights[1], 2.5f, 1e-5f);
  EXPECT_NEAR(r.weights[2] + r.weights[3], 2.5f, 1e-5f);
}

TEST(DeepseekYarn, InvFreqAndAttentionFactorFollowTheFormula) {
  RopeScaling scaling;
  scaling.type = "yarn";
  scaling.factor = 4.0;
  scaling.original_max_position_embeddings = 64;
  scaling.beta_fast = 32.0;
  scaling.beta_slow = 1.0;
  scaling.mscale = 0.707;
  scaling.mscale_all_dim = 0.707;
  const int64_t dim = 8;
  const double theta = 10000.0, factor = 4.0;
  // find_correction_dim(r) = dim * ln(64 / (2 pi r)) / (2 ln theta): beta_fast 32 -> -0.50 -> floor,
  // clamp: 0; beta_slow 1 -> 1.01 -> ceil: 2. The ramp over i = 0..3 is then i / 2, clamped.
  auto correction_dim = [&](double r) { return dim * std::log(64.0 / (2 * std::numbers::pi * r)) / (2 * std::log(theta)); };
  ASSERT_EQ(std::max(std::floor(correction_dim(32.0)), 0.0), 0.0);
  ASSERT_EQ(std::ceil(correction_dim(1.0)), 2.0);
  const std::vector<float> got = yarn_inv_freq(dim, theta, factor, scaling);
  ASSERT_EQ(got.size(), 4u);
  for (int64_t i = 0; i < 4; ++i) {
    const double extrapolation = 1.0 / std::pow(theta, 2.0 * double(i) / double(dim));
    const double ramp = std::clamp(double(i) / 2.0, 0.0, 1.0);
    const double want = extrapolation / factor * ramp + extrapolation * (1.0 - ramp);
    EXPECT_NEAR(got[size_t(i)], want, 1e-6 * want) << i;
  }
  EXPECT_NEAR(got[1], 0.0625f, 1e-7f);  // halfway: (0.1 + 0.025) / 2

  EXPECT_DOUBLE_EQ(yarn_attention_factor(factor, scaling), 1.0);  // 0.707 / 0.707
  scaling.mscale = 1.0;
  EXPECT_NEAR(yarn_attention_factor(factor, scaling), (0.1 * std::log(4.0) + 1) / (0.0707 * std::log(4.0) + 1), 1e-12);
  scaling.mscale_all_dim = 0.0;
  EXPECT_NEAR(yarn_attention_factor(factor, scaling), 0.1 * std::log(4.0) + 1, 1e-12);
  // mscale_all_dim without mscale: transformers takes get_mscale(factor), no ratio.
  scaling.mscale = 0.0;
  scaling.mscale_all_dim = 0.707;
  EXPECT_NEAR(yarn_attention_factor(factor, scaling), 0.1 * std::log(4.0) + 1, 1e-12);
  EXPECT_DOUBLE_EQ(yarn_mscale(1.0, 0.707), 1.0);
}

TEST(DeepseekRope, InterleavedRopeDeinterleavesThenRotatesHalfWithAScale) {
  CpuBackend backend(1);
  // One token at position 3, two heads of 6 dims: 2 passed through, 4 roped (half = 2).
  std::vector<float> x;
  for (int i = 0; i < 12; ++i) x.push_back(0.1f * float(i + 1));
  Tensor t = Tensor::from_f32(x, {1, 2, 6});
  const std::vector<float> freq = {1.0f, 0.01f};
  const float scale = 1.5f;
  backend.rope_interleaved(t, Tensor::from_i32({3}, {1}), Tensor::from_f32(freq, {2}), scale);
  for (int h = 0; h < 2; ++h) {
    const float* in = x.data() + h * 6;
    const float* out = t.data<float>() + h * 6;
    EXPECT_EQ(out[0], in[0]);
    EXPECT_EQ(out[1], in[1]);
    const float* r = in + 2;
    for (int i = 0; i < 2; ++i) {
      const float c = std::cos(3.0f * freq[size_t(i)]) * scale, s = std::sin(3.0f * freq[size_t(i)]) * scale;
      EXPECT_NEAR(out[2 + i], r[2 * i] * c - r[2 * i + 1] * s, 1e-6f);
      EXPECT_NEAR(out[2 + 2 + i], r[2 * i + 1] * c + r[2 * i] * s, 1e-6f);
    }
  }
}

}  // namespace
}  // namespace troupe
