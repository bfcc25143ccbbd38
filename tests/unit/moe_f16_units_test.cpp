// kernels/moe_f16_gemv.hpp's moe_f16_crowded_ctas: the CTAs one unit of the f16 MoE expert kernels
// takes in a wide batch. Bounds up to the resident CTAs keep plan_f16's spread (0); past them each
// unit takes ceil(4 x resident / bound), so the last wave holds pieces of experts (R1 at 64 tokens
// on the H200's 132 SMs: gate_up's bound 257 + 576 / 3 = 449 gives 3, down's 257 + 576 / 8 = 329
// gives 4).
#include <gtest/gtest.h>

#include "kernels/moe_f16_gemv.hpp"

namespace troupe::kernels {
namespace {

constexpr int64_t kResident = 2 * 132;

TEST(MoeF16Units, BoundsWithinTheResidentCtasKeepTheSpread) {
  EXPECT_EQ(moe_f16_crowded_ctas(kResident, 9), 0);    // one token: 9 experts
  EXPECT_EQ(moe_f16_crowded_ctas(kResident, 96), 0);   // 8 tokens: 72 slots, bound 72 + 72 / 3
  EXPECT_EQ(moe_f16_crowded_ctas(kResident, 192), 0);  // 16 tokens: 144 + 144 / 3
  EXPECT_EQ(moe_f16_crowded_ctas(kResident, kResident), 0);
}

TEST(MoeF16Units, WideBatchesSplitEachUnitSoTheLastWaveHoldsPieces) {
  EXPECT_EQ(moe_f16_crowded_ctas(kResident, 449), 3);  // R1 gate_up at 64 tokens
  EXPECT_EQ(moe_f16_crowded_ctas(kResident, 329), 4);  // R1 down at 64 tokens
  EXPECT_EQ(moe_f16_crowded_ctas(kResident, 353), 3);  // R1 gate_up at 32 tokens
  for (int64_t bound = kResident + 1; bound < 20000; bound += 97) {
    const int64_t per_unit = moe_f16_crowded_ctas(kResident, bound);
    EXPECT_GE(per_unit, 1) << bound;
    EXPECT_GE(per_unit * bound, 4 * kResident) << bound;        // at least four waves of pieces
    EXPECT_LT((per_unit - 1) * bound, 4 * kResident) << bound;  // and no more CTAs than that needs
  }
}

}  // namespace
}  // namespace troupe::kernels
