// The CPU references of kernels/moe_{routing,align,combine} (the op table's expected values for the
// MoE kernels, tests/gpu/backend_ops_moe.cpp): the router's reference against models/moe.cpp
// route_tokens on random logits (bit-identical: the device router is tested against this
// reference, so the pair stands for route_tokens), and the grouping and combine on hand-made cases;
// the prefill experts' segmented scales (moe_segment_quant) and GEMM tiles (moe_grouped_gemm).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/host_bf16.hpp"
#include "kernels/moe_align.hpp"
#include "kernels/fp8_block_gemm.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/moe_combine.hpp"
#include "kernels/moe_grouped_gemm.hpp"
#include "kernels/moe_segment_quant.hpp"
#include "kernels/moe_routing.hpp"
#include "models/moe.hpp"
#include "runtime/moe_route_params.hpp"

namespace troupe {
namespace {

kernels::MoeRouteParams kernel_params(const MoeConfig& moe) {
  const MoeRouteParams p = MoeRouteParams::from(moe);
  return {int32_t(p.num_experts), int32_t(p.num_groups), int32_t(p.topk_group), int32_t(p.top_k), p.norm_topk_prob,
          p.routed_scaling_factor};
}

MoeConfig moe_config(int64_t experts, int64_t groups, int64_t topk_group, int64_t k, bool norm, double scale) {
  MoeConfig moe;
  moe.n_routed_experts = experts;
  moe.n_group = groups;
  moe.topk_group = topk_group;
  moe.num_experts_per_tok = k;
  moe.norm_topk_prob = norm;
  moe.routed_scaling_factor = scale;
  return moe;
}

TEST(MoeKernelRefs, RouteRefIsRouteTokens) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const MoeConfig configs[] = {
      moe_config(8, 4, 2, 2, true, 2.5),     // the DeepSeek fixture's shape
      moe_config(8, 2, 1, 3, true, 1.0),     // E=8, 2 groups
      moe_config(256, 8, 4, 8, true, 2.5),   // R1
      moe_config(64, 1, 1, 6, false, 1.0),   // no groups, no normalisation
      moe_config(16, 8, 1, 4, true, 1.5),    // k > the kept experts: -inf ones fill in, lowest first
      moe_config(24, 24, 3, 2, true, 1.0),   // one expert per group: the group score is its choice
  };
  for (const MoeConfig& moe : configs) {
    const int64_t n = 37, experts = moe.n_routed_experts;
    std::vector<float> logits(static_cast<size_t>(n * experts)), bias(static_cast<size_t>(experts));
    for (float& v : logits) v = normal(rng);
    for (float& v : bias) v = 0.25f * normal(rng) - 0.5f;  // many negative choice scores
    for (int64_t t = 0; t < n; t += 3) {  // forced ties: whole rows, pairs of experts, whole groups
      float* row = logits.data() + t * experts;
      if (t % 9 == 0) std::fill(row, row + experts, 0.5f);
      row[experts - 1] = row[0];
      if (experts >= 4) row[2] = row[1];
    }
    bias[1] = bias[2];
    const MoeRouting expected = route_tokens(logits.data(), n, bias, moe);
    std::vector<int32_t> ids(static_cast<size_t>(n * moe.num_experts_per_tok));
    std::vector<float> weights(ids.size());
    kernels::moe_route_ref(logits.data(), bias.data(), ids.data(), weights.data(), n, kernel_params(moe));
    EXPECT_EQ(ids, expected.experts) << "E=" << experts << " groups=" << moe.n_group;
    EXPECT_EQ(weights, expected.weights) << "E=" << experts << " groups=" << moe.n_group;
  }
}

TEST(MoeKernelRefs, RouteRefOnAHandMadeToken) {
  // E=8 in 4 groups of 2, keep 2 groups, k=3; sigmoid(0) = 0.5, sigmoid(2) = 0.8808.
  const float logits[8] = {0, 0, 0, 0, 2, 2, -1, 5};
  const float bias[8] = {0, 0, 0, 0, 0, 0, 0, -10};  // the bias sinks group 3 (and expert 7)
  int32_t ids[3];
  float weights[3];
  kernels::moe_route_ref(logits, bias, ids, weights, 1, {8, 4, 2, 3, true, 2.0f});
  // Group scores {1, 1, 1.76, -8.7}: groups 2 and 0 (0 before 1 on the tie); then experts 4 and 5
  // (equal: the lower first) and 0 (before 1).
  EXPECT_EQ(ids[0], 4);
  EXPECT_EQ(ids[1], 5);
  EXPECT_EQ(ids[2], 0);
  const float s2 = 1.0f / (1.0f + std::exp(-2.0f)), sum = s2 + s2 + 0.5f;
  EXPECT_FLOAT_EQ(weights[0], s2 / sum * 2.0f);
  EXPECT_FLOAT_EQ(weights[1], s2 / sum * 2.0f);
  EXPECT_FLOAT_EQ(weights[2], 0.5f / sum * 2.0f);
}

TEST(MoeKernelRefs, AlignGroupsSlotsByExpertInSlotOrderWithPadding) {
  // 3 tokens, k=2, E=4: slots 0..5 go to experts {2,0, 2,3, 0,2}; expert 1 gets nothing.
  const int32_t ids[6] = {2, 0, 2, 3, 0, 2};
  int32_t counts[4], offsets[5], slot_pos[6];
  const int64_t capacity = kernels::moe_align_capacity(6, 4, 4);  // 6 + 4 * 3
  ASSERT_EQ(capacity, 18);
  std::vector<int32_t> sorted(size_t(capacity), 99);
  kernels::moe_align_ref(ids, 6, 4, 4, counts, offsets, sorted.data(), capacity, slot_pos);
  EXPECT_EQ(std::vector<int32_t>(counts, counts + 4), (std::vector<int32_t>{2, 0, 3, 1}));
  EXPECT_EQ(std::vector<int32_t>(offsets, offsets + 5), (std::vector<int32_t>{0, 4, 4, 8, 12}));
  const std::vector<int32_t> expect_sorted = {1, 4, -1, -1, 0, 2, 5, -1, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1};
  EXPECT_EQ(sorted, expect_sorted);
  EXPECT_EQ(std::vector<int32_t>(slot_pos, slot_pos + 6), (std::vector<int32_t>{4, 0, 5, 8, 1, 6}));

  // No padding, and an id outside [0, E) (another rank's expert) dropped.
  const int32_t ids2[4] = {1, -1, 1, 7};
  int32_t counts2[2], offsets2[3], sorted2[4], pos2[4];
  kernels::moe_align_ref(ids2, 4, 2, 1, counts2, offsets2, sorted2, 4, pos2);
  EXPECT_EQ(std::vector<int32_t>(counts2, counts2 + 2), (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(std::vector<int32_t>(offsets2, offsets2 + 3), (std::vector<int32_t>{0, 0, 2}));
  EXPECT_EQ(std::vector<int32_t>(sorted2, sorted2 + 4), (std::vector<int32_t>{0, 2, -1, -1}));
  EXPECT_EQ(std::vector<int32_t>(pos2, pos2 + 4), (std::vector<int32_t>{0, -1, 1, -1}));
}

TEST(MoeKernelRefs, GatherAndCombineFollowTheLayout) {
  // 2 tokens, k=2, hidden 2; positions: [slot 1, slot 2, pad, slot 0, slot 3].
  const float x[4] = {1, 2, 3, 4};
  const int32_t sorted[5] = {1, 2, -1, 0, 3};
  float x_perm[10];
  std::fill(x_perm, x_perm + 10, -7.0f);
  kernels::moe_gather_ref(x, sorted, x_perm, 5, 2, 2);
  EXPECT_EQ(std::vector<float>(x_perm, x_perm + 10), (std::vector<float>{1, 2, 3, 4, -7, -7, 1, 2, 3, 4}));
  uint16_t x16[4], x16_perm[10] = {};
  for (int i = 0; i < 4; ++i) x16[i] = kernels::host_f32_to_bf16(x[i]);
  kernels::moe_gather_ref(x16, sorted, x16_perm, 5, 2, 2);
  EXPECT_EQ(x16_perm[6], x16[0]);
  EXPECT_EQ(x16_perm[8], x16[2]);

  const int32_t slot_pos[4] = {3, 0, 1, -1};  // token 1's second expert is another rank's
  const float w[4] = {0.5f, 2.0f, 4.0f, 100.0f};
  const float y[10] = {10, 20, 30, 40, 0, 0, 1, 2, 0, 0};
  const float shared[4] = {1, 1, 1, 1};
  float out[4];
  kernels::moe_combine_ref(y, slot_pos, w, shared, out, 2, 2, 2);
  // token 0: 1 + 0.5 * y[3] + 2 * y[0] = {1 + 0.5 + 20, 1 + 1 + 40}; token 1: 1 + 4 * y[1].
  EXPECT_EQ(std::vector<float>(out, out + 4), (std::vector<float>{21.5f, 42.0f, 121.0f, 161.0f}));
  kernels::moe_combine_ref(y, slot_pos, w, nullptr, out, 2, 2, 2);
  EXPECT_EQ(std::vector<float>(out, out + 4), (std::vector<float>{20.5f, 41.0f, 120.0f, 160.0f}));
}

// Each expert's scales are its own fp8_quant block [nkb, count] at nkb * offsets[e]; an empty
// expert takes no room. Segments {2, 0, 3} of 5 rows, k = 200 (two K blocks, the last partial).
TEST(MoeKernelRefs, SegmentQuantLaysEachExpertsScalesOutAsItsOwnOperand) {
  constexpr int64_t kRows = 5, kK = 200, kBlocks = 2;
  const std::vector<int32_t> offsets = {0, 2, 2, 5};
  std::vector<float> x(size_t(kRows * kK));
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < kK; ++c) x[size_t(r * kK + c)] = float((r + 1) * (c < 128 ? 1 : 10)) * (c % 2 ? -1 : 1);
  std::vector<uint8_t> q(x.size());
  std::vector<float> scale(size_t(kBlocks * kRows), -1.0f);
  kernels::moe_segment_quant_ref(x.data(), offsets.data(), 3, q.data(), scale.data(), kRows, kK);
  // amax of row r, block kb: (r + 1) * (kb ? 10 : 1); scale = amax / 448.
  auto want = [](int64_t r, int64_t kb) { return float((r + 1) * (kb ? 10 : 1)) / 448.0f; };
  // expert 0: rows 0-1 at [0, 4): [kb][row]
  EXPECT_FLOAT_EQ(scale[0], want(0, 0));
  EXPECT_FLOAT_EQ(scale[1], want(1, 0));
  EXPECT_FLOAT_EQ(scale[2], want(0, 1));
  EXPECT_FLOAT_EQ(scale[3], want(1, 1));
  // expert 2: rows 2-4 at [4, 10)
  for (int64_t kb = 0; kb < kBlocks; ++kb)
    for (int64_t r = 2; r < 5; ++r) EXPECT_FLOAT_EQ(scale[size_t(4 + kb * 3 + (r - 2))], want(r, kb));
  // The values are fp8_quant's of each row (the layout of the scales is all that differs).
  std::vector<uint8_t> q_row(static_cast<size_t>(kK));
  std::vector<float> s_row(static_cast<size_t>(kBlocks));
  for (int64_t r = 0; r < kRows; ++r) {
    kernels::fp8_quant_ref(x.data() + r * kK, q_row.data(), s_row.data(), 1, kK);
    for (int64_t c = 0; c < kK; ++c) ASSERT_EQ(q[size_t(r * kK + c)], q_row[size_t(c)]);
  }
}

// Tiles cut each segment into runs of tile_rows; an empty expert has none; the grouped reference
// is the block GEMM of each segment with its own weights.
TEST(MoeKernelRefs, GroupedGemmTilesCoverEachSegmentAndTheReferenceUsesItsExpertsWeights) {
  const std::vector<int32_t> offsets = {0, 130, 130, 131};
  const auto tiles = kernels::moe_gemm_tiles(offsets.data(), 3, 64);
  ASSERT_EQ(tiles.size(), 4u);  // 64 + 64 + 2 rows of expert 0, 1 row of expert 2
  EXPECT_EQ(tiles[0].expert, 0);
  EXPECT_EQ(tiles[2].row_begin, 128);
  EXPECT_EQ(tiles[2].rows, 2);
  EXPECT_EQ(tiles[2].seg_count, 130);
  EXPECT_EQ(tiles[3].expert, 2);
  EXPECT_EQ(tiles[3].row_begin, 130);
  EXPECT_EQ(tiles[3].seg_first, 130);
  EXPECT_EQ(kernels::moe_gemm_tiles(offsets.data(), 3, 128).size(), 3u);
  const auto big = kernels::moe_gemm_tiles(offsets.data(), 3, 192);  // expert 0 whole in one tile
  ASSERT_EQ(big.size(), 2u);
  EXPECT_EQ(big[0].rows, 130);
  EXPECT_EQ(big[1].row_begin, 130);
  EXPECT_FALSE(kernels::moe_grouped_gemm_supported(576, 7000));
  EXPECT_TRUE(kernels::moe_grouped_gemm_supported(576, 7168));

  // Two experts of one row each, k = n = 128, x = 1 everywhere; expert e's weights all 1 * (e + 1).
  constexpr int64_t kN = 128, kK = 128;
  const std::vector<int32_t> two = {0, 1, 2};
  std::vector<float> x(size_t(2 * kK), 1.0f), x_scale = {1.0f, 1.0f};
  std::vector<uint8_t> w0(size_t(kN * kK), kernels::host_f32_to_e4m3(1.0f)), w1 = w0;
  std::vector<float> s0 = {1.0f}, s1 = {2.0f};
  const uint8_t* w[] = {w0.data(), w1.data()};
  const float* s[] = {s0.data(), s1.data()};
  std::vector<double> out(size_t(2 * kN));
  kernels::moe_grouped_gemm_ref(x.data(), x_scale.data(), w, s, two.data(), 2, out.data(), kN, kK);
  EXPECT_DOUBLE_EQ(out[0], 128.0);
  EXPECT_DOUBLE_EQ(out[kN], 256.0);
}

}  // namespace
}  // namespace troupe
