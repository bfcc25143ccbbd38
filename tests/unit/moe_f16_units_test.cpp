// kernels/moe_f16_gemv.hpp's moe_f16_units_ctas: how many CTAs one unit of the f16 MoE expert
// kernels takes. Up to 8 tokens the CTAs spread over the active experts (R1: 9 at one token,
// 72 at 8); in a wide batch whose units may outnumber the resident CTAs, each unit takes
// ceil(4 x resident / bound), so the last wave holds pieces of experts (R1 at 64 tokens on the
// H200's 132 SMs: gate_up's bound 257 + 576 / 3 = 449 gives 3, down's 257 + 576 / 8 = 329 gives 4).
#include <gtest/gtest.h>

#include "kernels/moe_f16_gemv.hpp"

namespace troupe::kernels {
namespace {

constexpr int64_t kResident = 2 * 132;

TEST(MoeF16Units, FewUnitsSpreadTheResidentCtasOverTheExperts) {
  EXPECT_EQ(moe_f16_units_ctas(kResident, 9, 9, true), 29);  // one token: 9 experts, 264 / 9
  EXPECT_EQ(moe_f16_units_ctas(kResident, 96, 72, true), 3);  // 8 tokens: 72 slots, bound 96
  EXPECT_EQ(moe_f16_units_ctas(kResident, 264, 257, true), 1);  // at the resident CTAs: unchanged
  EXPECT_EQ(moe_f16_units_ctas(kResident, 10, 0, false), kResident);  // no expert: no division by 0
}

TEST(MoeF16Units, WideBatchesSplitEachUnitSoTheLastWaveHoldsPieces) {
  EXPECT_EQ(moe_f16_units_ctas(kResident, 449, 257, true), 3);   // R1 gate_up at 64 tokens
  EXPECT_EQ(moe_f16_units_ctas(kResident, 329, 257, true), 4);   // R1 down at 64 tokens
  EXPECT_EQ(moe_f16_units_ctas(kResident, 353, 257, true), 3);   // R1 gate_up at 32 tokens
  EXPECT_EQ(moe_f16_units_ctas(kResident, 449, 257, false), 1);  // TROUPE_MOE_F16_CROWDED=0
  for (int64_t bound = kResident + 1; bound < 20000; bound += 97) {
    const int64_t per_unit = moe_f16_units_ctas(kResident, bound, 257, true);
    EXPECT_GE(per_unit * bound, 4 * kResident) << bound;  // at least four waves' worth of pieces
    EXPECT_GE(per_unit, 1) << bound;
  }
}

}  // namespace
}  // namespace troupe::kernels
