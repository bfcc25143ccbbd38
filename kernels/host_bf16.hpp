#pragma once
// bf16 <-> fp32 on the host for the CPU references (the same rounding as the device's
// __float2bfloat16_rn: round to nearest even, NaN stays NaN). kernels/ is a leaf, so it keeps its
// own copy of these two lines rather than including runtime/dtype.hpp.
#include <bit>
#include <cstdint>

namespace troupe::kernels {

inline float host_bf16_to_f32(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

inline uint16_t host_f32_to_bf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

}  // namespace troupe::kernels
