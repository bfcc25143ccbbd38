// Element types of checkpoint tensors: sizes, names and conversions to fp32.
#include "runtime/dtype.hpp"

#include <cmath>
#include <limits>

namespace troupe {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::f32, "F32", 4},       {DType::f16, "F16", 2}, {DType::bf16, "BF16", 2},
    {DType::f8_e4m3, "F8_E4M3", 1}, {DType::i64, "I64", 8}, {DType::i32, "I32", 4},
    {DType::i8, "I8", 1},         {DType::u8, "U8", 1},   {DType::bool_, "BOOL", 1},
};

const DTypeInfo* find_info(DType dtype) {
  for (const auto& info : kDTypes) {
    if (info.dtype == dtype) return &info;
  }
  return nullptr;
}

}  // namespace

size_t dtype_size(DType dtype) {
  const DTypeInfo* info = find_info(dtype);
  return info ? info->size : 0;
}

std::string_view dtype_name(DType dtype) {
  const DTypeInfo* info = find_info(dtype);
  return info ? info->name : std::string_view("UNKNOWN");
}

bool parse_dtype(std::string_view name, DType* out) {
  for (const auto& info : kDTypes) {
    if (info.name == name) {
      if (out) *out = info.dtype;
      return true;
    }
  }
  return false;
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
float f16_to_f32(uint16_t bits) {
  const uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t out;
  if (exponent == 0x1f) {
    // inf (mantissa 0) or NaN (mantissa kept, so payloads survive).
    out = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    out = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    out = sign;  // +-0
  } else {
    // Subnormal: value = mantissa * 2^-24; normalise it for fp32.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3ffu;
    const uint32_t exp32 = uint32_t(127 - 15 + 1 - shift);
    out = sign | (exp32 << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(out);
}

// Round to nearest even; overflow gives inf, NaN stays NaN (quiet).
uint16_t f32_to_f16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits >= 0x7f800000u) {
    if (abs_bits == 0x7f800000u) return sign | 0x7c00u;  // inf
    return sign | 0x7e00u | uint16_t((abs_bits >> 13) & 0x1ffu);  // NaN, quiet bit set
  }
  const int32_t exp32 = int32_t(abs_bits >> 23);  // biased by 127
  const int32_t exp16 = exp32 - 127 + 15;
  if (exp16 >= 0x1f) return sign | 0x7c00u;  // too large: inf
  if (exp16 <= 0) {
    // Subnormal or zero in f16: value / 2^-24, rounded to nearest even.
    if (exp16 < -10) return sign;  // below half the smallest subnormal
    const uint32_t mantissa = (abs_bits & 0x7fffffu) | 0x800000u;  // implicit 1
    const int shift = 14 - exp16;  // 13 mantissa bits dropped + denormalisation
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;  // may carry into exp 1: fine
    return sign | uint16_t(half);
  }
  uint32_t half = (uint32_t(exp16) << 10) | ((abs_bits >> 13) & 0x3ffu);
  const uint32_t rest = abs_bits & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into inf: correct
  return sign | uint16_t(half);
}

// OCP FP8 E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no inf, S.1111.111 is NaN.
float f8_e4m3_to_f32(uint8_t bits) {
  const bool negative = (bits & 0x80u) != 0;
  const uint32_t exponent = (bits >> 3) & 0xfu;
  const uint32_t mantissa = bits & 0x7u;
  if (exponent == 0xf && mantissa == 0x7) return std::numeric_limits<float>::quiet_NaN();
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(float(mantissa), -9);  // subnormal: m/8 * 2^-6
  } else {
    magnitude = std::ldexp(float(8 + mantissa), int(exponent) - 7 - 3);
  }
  return negative ? -magnitude : magnitude;
}

bool convert_to_f32(DType dtype, const void* src, size_t count, float* dst) {
  switch (dtype) {
    case DType::f32:
      if (count) std::memcpy(dst, src, count * sizeof(float));
      return true;
    case DType::f16:
    case DType::bf16: {
      const auto* in = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, in + 2 * i, 2);  // the source may be unaligned in the mapping
        dst[i] = dtype == DType::f16 ? f16_to_f32(bits) : bf16_to_f32(bits);
      }
      return true;
    }
    case DType::f8_e4m3: {
      const auto* in = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = f8_e4m3_to_f32(in[i]);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace troupe
