#pragma once
// FP8 E4M3 (OCP "e4m3fn": bias 7, no inf, S.1111.111 NaN, max 448) <-> fp32 on the host, for the
// CPU references: the same rounding as the device's saturating cvt.rn.satfinite.e4m3x2.f32
// (nearest even, |v| >= 448 gives +-448, NaN stays NaN). kernels/ is a leaf, so it keeps its own
// copy rather than including runtime/dtype.hpp.
#include <cmath>
#include <cstdint>

namespace troupe::kernels {

constexpr float kE4m3Max = 448.0f;

inline float host_e4m3_to_f32(uint8_t bits) {
  const uint32_t exponent = (bits >> 3) & 0xfu, mantissa = bits & 0x7u;
  if (exponent == 0xf && mantissa == 0x7) return NAN;
  const float magnitude =
      exponent == 0 ? std::ldexp(float(mantissa), -9) : std::ldexp(float(8 + mantissa), int(exponent) - 10);
  return (bits & 0x80u) ? -magnitude : magnitude;
}

inline uint8_t host_f32_to_e4m3(float v) {
  if (std::isnan(v)) return 0x7f;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const float a = std::fabs(v);
  if (a >= kE4m3Max) return sign | 0x7e;
  if (a < 0.015625f) return sign | uint8_t(std::nearbyint(a * 512.0f));  // subnormal steps of 2^-9; 8 is 2^-6
  int e = 0;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  const int exponent = e - 1;
  const float q = std::nearbyint(std::ldexp(a, 3 - exponent));  // in [8, 16]; 16 carries into the exponent
  return sign | uint8_t(((exponent + 7) << 3) + int(q) - 8);
}

}  // namespace troupe::kernels
