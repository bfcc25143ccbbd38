// The CPU references of kernels/ (the op table's expected values, tests/gpu/backend_ops_test.cpp)
// on tiny cases computed by hand, so the references are checked without a GPU.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <climits>
#include <cmath>
#include <vector>

#include "kernels/argmax.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/embedding.hpp"
#include "kernels/gather_rows.hpp"
#include "kernels/gemv.hpp"
#include "kernels/host_bf16.hpp"
#include "kernels/kv_write.hpp"
#include "kernels/mla_absorb.hpp"
#include "kernels/mlp_activation.hpp"
#include "kernels/paged_attention.hpp"
#include "kernels/qkv_rope.hpp"
#include "kernels/rmsnorm.hpp"
#include "kernels/rope.hpp"
#include "kernels/sampling.hpp"

namespace troupe::kernels {
namespace {

constexpr float kTol = 1e-6f;

// bf16 bits of a few exact values.
constexpr uint16_t kOne = 0x3f80, kTwo = 0x4000, kHalf = 0x3f00, kMinusOne = 0xbf80;

TEST(KernelRefs, RmsNorm) {
  // x = {3, 4}: mean square 12.5, scale 1 / sqrt(12.5); weight {1, 2}.
  const float x[] = {3, 4}, w[] = {1, 2};
  float out[2];
  rmsnorm_ref(x, w, out, 1, 2, 0.0f);
  EXPECT_NEAR(out[0], 0.84852814f, kTol);
  EXPECT_NEAR(out[1], 2.26274170f, kTol);
  uint16_t bits[2];
  rmsnorm_ref(x, w, bits, 1, 2, 0.0f);
  EXPECT_EQ(bits[0], 0x3f59);  // 0.84765625: 1.697.. * 2^-1 rounds to 1 + 89/128
  EXPECT_EQ(bits[1], 0x4011);  // 2.265625: 1.1313.. * 2 rounds to 1 + 17/128
  // eps: x = {0, 0} with eps 1 gives zeros, not NaN.
  const float zeros[] = {0, 0};
  rmsnorm_ref(zeros, w, out, 1, 2, 1.0f);
  EXPECT_EQ(out[0], 0.0f);
}

TEST(KernelRefs, AddRmsNormUpdatesTheResidual) {
  float residual[] = {1, 2};
  const float x[] = {2, 2}, w[] = {1, 2};
  float out[2];
  add_rmsnorm_ref(residual, x, w, out, 1, 2, 0.0f);
  EXPECT_EQ(residual[0], 3.0f);
  EXPECT_EQ(residual[1], 4.0f);
  EXPECT_NEAR(out[0], 0.84852814f, kTol);
  float residual2[] = {1, 2};
  uint16_t bits[2];
  add_rmsnorm_ref(residual2, x, w, bits, 1, 2, 0.0f);
  EXPECT_EQ(bits[0], 0x3f59);
  EXPECT_EQ(residual2[1], 4.0f);
}

TEST(KernelRefs, Embedding) {
  const float table[] = {0, 1, 10, 11, 20, 21};  // [3, 2]
  const int32_t ids[] = {2, 0};
  float out[4];
  embedding_ref(ids, table, out, 2, 2);
  EXPECT_EQ(std::vector<float>(out, out + 4), (std::vector<float>{20, 21, 0, 1}));
  const uint16_t table16[] = {kOne, kTwo, kHalf, kMinusOne};  // [2, 2]
  const int32_t ids16[] = {1};
  embedding_ref(ids16, table16, out, 1, 2);
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], -1.0f);
}

TEST(KernelRefs, Elementwise) {
  // silu(g) * u = g / (1 + e^-g) * u.
  const float gate[] = {0, 1, -1}, up[] = {5, 2, 1};
  float out[3];
  silu_and_mul_ref(gate, up, out, 3);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_NEAR(out[1], 1.46211716f, kTol);
  EXPECT_NEAR(out[2], -0.26894142f, kTol);
  // Packed rows [gate | up]: row 0 = {1, -1 | 2, 1}, row 1 = {0, 1 | 9, 1}.
  const float gate_up[] = {1, -1, 2, 1, 0, 1, 9, 1};
  float packed[4];
  silu_and_mul_packed_ref(gate_up, packed, 2, 2);
  EXPECT_NEAR(packed[0], 1.46211716f, kTol);
  EXPECT_NEAR(packed[1], -0.26894142f, kTol);
  EXPECT_EQ(packed[2], 0.0f);
  EXPECT_NEAR(packed[3], 0.73105858f, kTol);
  uint16_t packed16[4];
  silu_and_mul_packed_ref(gate_up, packed16, 2, 2);
  EXPECT_EQ(packed16[0], 0x3fbb);  // 1.4609375 = 1 + 59/128
  EXPECT_EQ(packed16[2], 0x0000);

  const float a[] = {1, 2}, b[] = {3, -4};
  add_ref(a, b, out, 2);
  EXPECT_EQ(out[0], 4.0f);
  EXPECT_EQ(out[1], -2.0f);
  float rows[] = {1, 2, 3, 4};  // [2, 2]
  const float bias[] = {10, 20};
  add_bias_ref(rows, bias, 2, 2);
  EXPECT_EQ(std::vector<float>(rows, rows + 4), (std::vector<float>{11, 22, 13, 24}));

  // Round to nearest even: an exact tie keeps an even half, rounds an odd one up; FLT_MAX overflows.
  const float x[] = {1.0f, std::bit_cast<float>(0x3f808000u), std::bit_cast<float>(0x3f818000u), FLT_MAX, NAN};
  uint16_t bits[5];
  f32_to_bf16_ref(x, bits, 5);
  EXPECT_EQ(bits[0], kOne);
  EXPECT_EQ(bits[1], 0x3f80);
  EXPECT_EQ(bits[2], 0x3f82);
  EXPECT_EQ(bits[3], 0x7f80);
  EXPECT_TRUE(std::isnan(host_bf16_to_f32(bits[4])));
}

TEST(KernelRefs, MlpActivationBf16) {
  const uint16_t gate_up[] = {kOne, kTwo};  // one row: gate 1, up 2
  uint16_t out[1];
  silu_and_mul_packed_bf16_ref(gate_up, out, 1, 1);
  EXPECT_EQ(out[0], 0x3fbb);  // bf16(1.4621..)
}

TEST(KernelRefs, RopeRotatesPairsAndKeepsTheRest) {
  // head_dim 6, half 2: pairs (0, 2) and (1, 3) rotate by pos * {1, 0.5}; dims 4, 5 stay.
  float q[] = {1, 0, 0, 0, 7, 8};
  float k[] = {0, 1, 0, 0, 9, 9};
  const int32_t pos[] = {1};
  const float inv_freq[] = {1.0f, 0.5f};
  rope_ref(q, k, pos, inv_freq, 1, 1, 1, 6, 2);
  EXPECT_NEAR(q[0], std::cos(1.0f), kTol);
  EXPECT_NEAR(q[2], std::sin(1.0f), kTol);
  EXPECT_EQ(q[1], 0.0f);
  EXPECT_EQ(q[4], 7.0f);
  EXPECT_NEAR(k[1], std::cos(0.5f), kTol);
  EXPECT_NEAR(k[3], std::sin(0.5f), kTol);
  EXPECT_EQ(k[5], 9.0f);
  // Position 0 is the identity.
  float q0[] = {1, 2, 3, 4}, k0[] = {5, 6, 7, 8};
  const int32_t zero[] = {0};
  rope_ref(q0, k0, zero, inv_freq, 1, 1, 1, 4, 2);
  EXPECT_EQ(std::vector<float>(q0, q0 + 4), (std::vector<float>{1, 2, 3, 4}));
}

TEST(KernelRefs, QkvRopeWritesQAndTheSlot) {
  // One token, 1 q head, 1 kv head, head_dim 4, half 2; into slot 2 of a 3-slot cache.
  const float qkv[] = {1, 0, 0, 0, /*k*/ 0, 1, 0, 0, /*v*/ 5, 6, 7, 8};
  const int32_t pos[] = {1}, slot[] = {2};
  const float inv_freq[] = {1.0f, 0.5f};
  std::vector<float> k(12, -1), v(12, -1), q(4, -1);
  qkv_rope_write_kv_ref(qkv, pos, inv_freq, slot, k.data(), v.data(), q.data(), 1, 1, 1, 4, 2, {});
  EXPECT_NEAR(q[0], std::cos(1.0f), kTol);
  EXPECT_NEAR(q[2], std::sin(1.0f), kTol);
  EXPECT_NEAR(k[8 + 1], std::cos(0.5f), kTol);
  EXPECT_NEAR(k[8 + 3], std::sin(0.5f), kTol);
  EXPECT_EQ(std::vector<float>(v.begin() + 8, v.end()), (std::vector<float>{5, 6, 7, 8}));
  EXPECT_EQ(k[0], -1.0f);  // other slots untouched
  EXPECT_EQ(v[7], -1.0f);
  std::vector<uint16_t> k16(12, 0xffff), v16(12, 0xffff);
  qkv_rope_write_kv_ref(qkv, pos, inv_freq, slot, k16.data(), v16.data(), q.data(), 1, 1, 1, 4, 2, {});
  EXPECT_EQ(std::vector<uint16_t>(v16.begin() + 8, v16.end()), (std::vector<uint16_t>{0x40a0, 0x40c0, 0x40e0, 0x4100}));
  EXPECT_EQ(k16[8 + 1], host_f32_to_bf16(std::cos(0.5f)));
  EXPECT_EQ(k16[0], 0xffff);
}

// Qwen3's head norms by hand: x * inv_rms * w per head (inv_rms = 1 / sqrt(mean(x^2) + eps)),
// applied before the rotation (so w scales the dims it belongs to, not their rotated partners);
// v stays as it is.
TEST(KernelRefs, QkvRopeNormsEachHeadBeforeRotating) {
  // One token, 1 q head, 1 kv head, head_dim 4, half 2, eps 3: the q head's mean square is 1
  // (inv_rms 1/2), the k head's 13 (inv_rms 1/4).
  const float qkv[] = {0, 0, 0, 2, /*k*/ 6, 4, 0, 0, /*v*/ 5, 6, 7, 8};
  const float q_w[] = {1, 1, 1, 1.5f}, k_w[] = {1, 0.5f, 1, 1};
  const int32_t pos[] = {1}, slot[] = {0};
  const float inv_freq[] = {1.0f, 0.5f};
  std::vector<float> k(4, -1), v(4, -1), q(4, -1);
  qkv_rope_write_kv_ref(qkv, pos, inv_freq, slot, k.data(), v.data(), q.data(), 1, 1, 1, 4, 2, {q_w, k_w, 3.0f});
  // q normed {0, 0, 0, 1.5}; k normed {1.5, 0.5, 0, 0}; pair (i, i + 2) rotated by pos * inv_freq[i].
  EXPECT_NEAR(q[0], 0.0f, kTol);
  EXPECT_NEAR(q[1], -1.5f * std::sin(0.5f), kTol);
  EXPECT_NEAR(q[2], 0.0f, kTol);
  EXPECT_NEAR(q[3], 1.5f * std::cos(0.5f), kTol);
  EXPECT_NEAR(k[0], 1.5f * std::cos(1.0f), kTol);
  EXPECT_NEAR(k[1], 0.5f * std::cos(0.5f), kTol);
  EXPECT_NEAR(k[2], 1.5f * std::sin(1.0f), kTol);
  EXPECT_NEAR(k[3], 0.5f * std::sin(0.5f), kTol);
  EXPECT_EQ(v, (std::vector<float>{5, 6, 7, 8}));
  // Dims past the rotary part (half 1: dims 2 and 3) are normed too; a null weight leaves its
  // heads unnormed.
  const float qkv_tail[] = {0, 0, 0, 2, /*k*/ 0, 0, 6, 4, /*v*/ 5, 6, 7, 8};
  const float inv_freq1[] = {1.0f};
  qkv_rope_write_kv_ref(qkv_tail, pos, inv_freq1, slot, k.data(), v.data(), q.data(), 1, 1, 1, 4, 1,
                        {nullptr, k_w, 3.0f});
  EXPECT_EQ(q, (std::vector<float>{0, 0, 0, 2}));
  EXPECT_EQ(k, (std::vector<float>{0, 0, 1.5f, 1}));
}

TEST(KernelRefs, WriteKv) {
  const float x[] = {3, 4};
  const int32_t slots[] = {1};
  std::vector<float> cache(6, -1);
  write_kv_ref(cache.data(), x, slots, 1, 2);
  EXPECT_EQ(cache, (std::vector<float>{-1, -1, 3, 4, -1, -1}));
  std::vector<uint16_t> cache16(6, 0xffff);
  write_kv_ref(cache16.data(), x, slots, 1, 2);
  EXPECT_EQ(cache16, (std::vector<uint16_t>{0xffff, 0xffff, 0x4040, 0x4080, 0xffff, 0xffff}));
}

TEST(KernelRefs, PagedAttentionWeighsValuesBySoftmax) {
  // One sequence of 3 cached positions in blocks of 2, table {1, 0}: positions 0, 1, 2 live in slots
  // 2, 3, 0 (slot 1 is NaN: never read). head_dim 1, 2 q heads over 1 kv head, q = 1, scale 1.
  // Keys {0, ln 2, ln 3}: weights 1 : 2 : 3 over values {6, 12, 18}: (6 + 24 + 54) / 6 = 14.
  // Token 1 sits at position 0: only value 6.
  std::vector<float> k = {std::log(3.0f), NAN, 0.0f, std::log(2.0f)};
  std::vector<float> v = {18, NAN, 6, 12};
  const float q[] = {1, 1, 1, 1};  // [2 tokens, 2 heads, 1]
  const int32_t positions[] = {2, 0}, seq_of_token[] = {0, 0}, tables[] = {1, 0};
  float out[4];
  paged_attention_ref(q, k.data(), v.data(), positions, seq_of_token, tables, 2, 2, 2, 2, 1, 1, 1.0f, out);
  EXPECT_NEAR(out[0], 14.0f, 1e-5f);
  EXPECT_NEAR(out[1], 14.0f, 1e-5f);
  EXPECT_EQ(out[2], 6.0f);
  // bf16 cache, equal keys: the mean of {6, 12, 18}.
  const uint16_t nan16 = 0x7fc0;
  const std::vector<uint16_t> k16 = {0, nan16, 0, 0};
  const std::vector<uint16_t> v16 = {host_f32_to_bf16(18), nan16, host_f32_to_bf16(6), host_f32_to_bf16(12)};
  paged_attention_ref(q, k16.data(), v16.data(), positions, seq_of_token, tables, 2, 2, 2, 2, 1, 1, 1.0f, out);
  EXPECT_NEAR(out[1], 12.0f, 1e-5f);
  EXPECT_EQ(out[3], 6.0f);
}

TEST(KernelRefs, GatherRows) {
  const float x[] = {0, 1, 10, 11, 20, 21};
  const int32_t rows[] = {2, 2, 0};
  float out[6];
  gather_rows_ref(x, rows, out, 3, 2);
  EXPECT_EQ(std::vector<float>(out, out + 6), (std::vector<float>{20, 21, 20, 21, 0, 1}));
  const uint16_t x16[] = {1, 2, 3, 4};
  uint16_t out16[2];
  const int32_t one[] = {1};
  gather_rows_ref(x16, one, out16, 1, 2);
  EXPECT_EQ(out16[0], 3);
  EXPECT_EQ(out16[1], 4);
}

TEST(KernelRefs, ArgmaxAndGreedySampling) {
  const float logits[] = {1, 3, 3, -INFINITY,                  // ties: the first index
                          -INFINITY, -INFINITY, -INFINITY, -INFINITY,  // nothing wins
                          NAN, 2, 5, 1,                        // NaN never wins
                          1, INFINITY, 0, 0};
  int32_t ids[4];
  argmax_ref(logits, ids, 4, 4);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], INT32_MAX);
  EXPECT_EQ(ids[2], 2);
  EXPECT_EQ(ids[3], 1);
  // Greedy sampling declines rows with a NaN or no finite maximum.
  sample_greedy_ref(logits, ids, 4, 4);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], -1);
  EXPECT_EQ(ids[2], -1);
  EXPECT_EQ(ids[3], -1);
}

TEST(KernelRefs, GemvBf16) {
  // x {1, 2}; W rows {1, 1} and {0.5, -1}; bias {0.25, 0}: out {3.25, -1.5}, sum |x w| + |b| {3.25, 2.5}.
  const float x[] = {1, 2}, bias[] = {0.25f, 0};
  const uint16_t w[] = {kOne, kOne, kHalf, kMinusOne};
  double out[2], abs_sum[2];
  gemv_bf16_ref(x, w, bias, out, abs_sum, 1, 2, 2);
  EXPECT_EQ(out[0], 3.25);
  EXPECT_EQ(out[1], -1.5);
  EXPECT_EQ(abs_sum[0], 3.25);
  EXPECT_EQ(abs_sum[1], 2.5);
}

TEST(KernelRefs, MlaAbsorptionProductsRoundTheirInputsToNearestEven) {
  // H 2, nope 2, rope 1, kv_lora 2, v_dim 1; per head rows [W_UK (2) | W_UV (1)]:
  //   head 0: W_UK {1, 0.5}, {-1, 1}; W_UV {0.5, -1};  head 1: W_UK {0.5, 0.5}, {1, -1}; W_UV {1, 1}.
  // One computed token, row 1 of q and out (row 0 NaN / untouched). Ties: 1 + 2^-8 rounds to 1 (even),
  // 1 + 3 2^-8 to 1 + 2^-6 (even), 2^-7 being bf16's step at 1.
  const uint16_t w[] = {kOne, kHalf, kMinusOne, kOne, kHalf, kMinusOne, kHalf, kHalf, kOne, kMinusOne, kOne, kOne};
  const float tie_down = 1.0f + 0x1p-8f, tie_up = 1.0f + 3 * 0x1p-8f;
  const float q[] = {NAN, NAN, NAN, NAN, NAN, NAN, tie_down, 2, 7, tie_up, -1, -3};  // [2 rows, 2 heads, 3]
  const int32_t tokens[] = {1};
  double q_abs[6];
  mla_absorb_q_bf16_ref(q, tokens, w, q_abs, 1, 2, 2, 1, 2, 1);
  EXPECT_EQ(q_abs[0], -1.0);  // 1 * 1 + 2 * -1
  EXPECT_EQ(q_abs[1], 2.5);   // 1 * 0.5 + 2 * 1
  EXPECT_EQ(q_abs[2], 7.0);   // q_pe as it is
  EXPECT_EQ(q_abs[3], -0.5 + 0x1p-7);  // (1 + 2^-6) * 0.5 - 1
  EXPECT_EQ(q_abs[4], 1.5 + 0x1p-7);   // (1 + 2^-6) * 0.5 + 1
  EXPECT_EQ(q_abs[5], -3.0);
  const float o_lat[] = {tie_down, 4, 2, tie_up};  // [1, 2 heads, 2]
  double out[4] = {99, 99, 0, 0};                 // [2 rows, 2 heads, 1]
  mla_unabsorb_out_bf16_ref(o_lat, tokens, w, out, 1, 2, 2, 2, 1);
  EXPECT_EQ(out[0], 99.0);
  EXPECT_EQ(out[1], 99.0);
  EXPECT_EQ(out[2], -3.5);             // 0.5 * 1 - 4
  EXPECT_EQ(out[3], 3.0 + 0x1p-6);     // 2 + 1 + 2^-6
}

}  // namespace
}  // namespace troupe::kernels
