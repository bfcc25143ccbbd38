#pragma once
// Element types of checkpoint tensors and their conversions to fp32.
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace troupe {

enum class DType : uint8_t { f32, f16, bf16, f8_e4m3, i64, i32, i8, u8, bool_ };

// Bytes per element.
size_t dtype_size(DType dtype);
// The safetensors spelling ("F32", "BF16", "F8_E4M3", ...).
std::string_view dtype_name(DType dtype);
// Parses a safetensors dtype string; false when unknown.
bool parse_dtype(std::string_view name, DType* out);

inline float bf16_to_f32(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

// Round to nearest even, NaN stays NaN.
inline uint16_t f32_to_bf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);
float f8_e4m3_to_f32(uint8_t bits);

// Converts `count` elements of `dtype` at `src` to fp32. Only floating types (f32, f16, bf16,
// f8_e4m3) are accepted; returns false otherwise.
bool convert_to_f32(DType dtype, const void* src, size_t count, float* dst);

}  // namespace troupe
