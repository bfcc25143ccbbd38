#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "runtime/dtype.hpp"

namespace troupe {
namespace {

TEST(DType, SizesAndNamesRoundTrip) {
  const std::pair<DType, size_t> cases[] = {{DType::f32, 4}, {DType::f16, 2}, {DType::bf16, 2},
                                            {DType::f8_e4m3, 1}, {DType::i64, 8}, {DType::i32, 4},
                                            {DType::i8, 1}, {DType::u8, 1}, {DType::bool_, 1}};
  for (const auto& [dtype, size] : cases) {
    EXPECT_EQ(dtype_size(dtype), size) << dtype_name(dtype);
    DType parsed = DType::u8;
    ASSERT_TRUE(parse_dtype(dtype_name(dtype), &parsed)) << dtype_name(dtype);
    EXPECT_EQ(parsed, dtype);
  }
  EXPECT_EQ(dtype_name(DType::bf16), "BF16");
  EXPECT_EQ(dtype_name(DType::f8_e4m3), "F8_E4M3");
  DType unused;
  EXPECT_FALSE(parse_dtype("F7", &unused));
  EXPECT_FALSE(parse_dtype("f32", &unused));  // the spelling is upper case
  EXPECT_FALSE(parse_dtype("", &unused));
}

TEST(DType, Bf16KnownBitPatterns) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xc000), -2.0f);
  EXPECT_TRUE(std::isinf(bf16_to_f32(0xff80)));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // bf16 keeps 7 mantissa bits: the ulp at 1.0 is 2^-7. Exact halfway cases round to even.
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -7) + std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  // A NaN whose payload lies only in the low 16 bits must not become inf.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0x7f800001u)))));
}

TEST(DType, F16KnownBitPatterns) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);  // largest finite
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to the next step: rounds to even = inf
  EXPECT_EQ(f32_to_f16(1e9f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));
  uint16_t nan_bits = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan_bits & 0x7c00, 0x7c00);
  EXPECT_NE(nan_bits & 0x03ff, 0);
  // Subnormals: value = mantissa * 2^-24; smallest normal 2^-14.
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);             // halfway to 0: even
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);             // above halfway
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);             // 1.5 units: even = 2
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.75f, -24)), 0x0400);         // rounds up into normal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -30)), 0x0000);
  // Normal rounding: the ulp at 1.0 is 2^-10.
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
}

TEST(DType, F16EveryPatternRoundTrips) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const float value = f16_to_f32(uint16_t(bits));
    const bool is_nan = (bits & 0x7c00) == 0x7c00 && (bits & 0x03ff) != 0;
    ASSERT_EQ(std::isnan(value), is_nan) << std::hex << bits;
    if (!is_nan) {
      ASSERT_EQ(f32_to_f16(value), bits) << std::hex << bits;
    }
  }
}

TEST(DType, Bf16EveryPatternRoundTrips) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const float value = bf16_to_f32(uint16_t(bits));
    if (std::isnan(value)) {
      ASSERT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(value))));
    } else {
      ASSERT_EQ(f32_to_bf16(value), bits) << std::hex << bits;
    }
  }
}

TEST(DType, F8E4M3KnownBitPatterns) {
  // S.EEEE.MMM, bias 7; exponent 0 is subnormal (m/8 * 2^-6); S.1111.111 is NaN; no inf.
  EXPECT_EQ(f8_e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0xb8), -1.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0x40), 2.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0x3c), 1.5f);
  EXPECT_EQ(f8_e4m3_to_f32(0x7e), 448.0f);   // largest finite
  EXPECT_EQ(f8_e4m3_to_f32(0x78), 256.0f);   // exponent 15 is finite
  EXPECT_EQ(f8_e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(f8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(f8_e4m3_to_f32(0x07), std::ldexp(7.0f, -9));
  EXPECT_EQ(f8_e4m3_to_f32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(f8_e4m3_to_f32(0x80)));
  EXPECT_TRUE(std::isnan(f8_e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(f8_e4m3_to_f32(0xff)));
  int num_nan = 0;
  for (int bits = 0; bits < 256; ++bits) {
    const float value = f8_e4m3_to_f32(uint8_t(bits));
    EXPECT_FALSE(std::isinf(value)) << bits;
    num_nan += std::isnan(value);
  }
  EXPECT_EQ(num_nan, 2);
}

TEST(DType, ConvertToF32HandlesUnalignedSourcesAndRejectsIntegers) {
  const uint16_t halves[] = {0x3c00, 0xc000, 0x0001};  // 1, -2, 2^-24
  std::vector<uint8_t> buffer(1 + sizeof(halves));
  std::memcpy(buffer.data() + 1, halves, sizeof(halves));  // odd address
  float out[3];
  ASSERT_TRUE(convert_to_f32(DType::f16, buffer.data() + 1, 3, out));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));
  const uint16_t bf[] = {0x3f80, 0xc000};
  ASSERT_TRUE(convert_to_f32(DType::bf16, bf, 2, out));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  const uint8_t f8[] = {0x38, 0x7e};
  ASSERT_TRUE(convert_to_f32(DType::f8_e4m3, f8, 2, out));
  EXPECT_EQ(out[1], 448.0f);
  const float f32[] = {0.25f, -7.5f};
  ASSERT_TRUE(convert_to_f32(DType::f32, f32, 2, out));
  EXPECT_EQ(out[1], -7.5f);
  const int32_t ints[] = {1, 2};
  EXPECT_FALSE(convert_to_f32(DType::i32, ints, 2, out));
  EXPECT_FALSE(convert_to_f32(DType::bool_, ints, 2, out));
}

}  // namespace
}  // namespace troupe
