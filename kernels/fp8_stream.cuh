#pragma once
// Device pieces shared by the kernels that stream FP8 block-scaled weights through tensor-core mma
// (fp8_block_gemm.cu's decode GEMV, moe_grouped_gemv.cu on bf16; fp8_gemv_f16.cu on f16): 16-byte
// streaming loads that bypass L1, the byte-load fallback for rows that are not 16-byte multiples,
// the exact e4m3 -> bf16 * 2^-112 and e4m3 -> f16 widenings, and mma.sync m16n8k16 (bf16, f16) with
// the A fragment as four registers; for the one-token kernels on CUDA cores (fp8_gemv_rows.cu), the
// widening of e4m3 to fp32 * 2^-120 and a 16-byte dot.
// The mapping the mma kernels use (the order of K inside one mma does not matter while A and B agree):
// thread (g = lane / 4, t = lane % 4) owns rows g and g + 8 of its warp's 16 and, of each 128-wide K
// block, the 16 bytes at lo_offset(t) and the 16 at hi_offset(t); piece p (0..3, 8 bytes: k16 steps
// 2p and 2p + 1) of them starts at piece_offset(t, p), and at each k16 step the thread feeds its 4
// bytes to the mma slots {2t, 2t+1, 2t+8, 2t+9} and takes x at the same 4 K positions. With lo at
// 16 t and hi at 64 + 16 t, each 16-byte load instruction of a warp covers 64 contiguous bytes (two
// whole 32-byte sectors) of each of its 8 rows, so no sector is requested twice.
#include <cstdint>

namespace troupe::kernels::fp8_stream {

__device__ __forceinline__ uint4 zero4() { return make_uint4(0, 0, 0, 0); }

// 16 bytes of a stream read once (not kept in L1); zeros when !valid.
__device__ __forceinline__ uint4 load_stream16(const uint8_t* p, bool valid) {
  uint4 v;
  asm volatile(
      "{\n"
      "  .reg .pred p;\n"
      "  setp.ne.b32 p, %5, 0;\n"
      "  mov.b32 %0, 0;\n  mov.b32 %1, 0;\n  mov.b32 %2, 0;\n  mov.b32 %3, 0;\n"
      "  @p ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      "}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "r"(int(valid)));
  return v;
}

// 16 bytes from byte loads, zero past `limit` bytes (the unaligned path, k % 16 != 0).
__device__ __forceinline__ uint4 load_bytes16(const uint8_t* p, int64_t limit) {
  uint32_t words[4] = {0, 0, 0, 0};
#pragma unroll
  for (int j = 0; j < 16; ++j)
    if (j < limit) words[j / 4] |= uint32_t(__ldg(p + j)) << (8 * (j % 4));
  return make_uint4(words[0], words[1], words[2], words[3]);
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

__device__ __forceinline__ int lo_offset(int t) { return 16 * t; }
__device__ __forceinline__ int hi_offset(int t) { return 64 + 16 * t; }
__device__ __forceinline__ int piece_offset(int t, int p) { return p < 2 ? 16 * t + 8 * p : 64 + 16 * t + 8 * (p - 2); }

// Thread t's 32 bytes of the K block starting at byte kb0 of a row: lo and hi, zeros past k.
// VEC: 16-byte loads (k % 16 == 0, the row 16-byte aligned).
template <bool VEC>
__device__ __forceinline__ void load_w_piece(const uint8_t* row, int64_t kb0, int t, int64_t k, uint4& lo, uint4& hi) {
  const int64_t k_lo = kb0 + lo_offset(t), k_hi = kb0 + hi_offset(t);
  if constexpr (VEC) {
    lo = load_stream16(row + k_lo, k_lo < k);
    hi = load_stream16(row + k_hi, k_hi < k);
  } else {
    lo = k_lo < k ? load_bytes16(row + k_lo, k - k_lo) : zero4();
    hi = k_hi < k ? load_bytes16(row + k_hi, k - k_hi) : zero4();
  }
}

// Two e4m3 (low byte first) to two bf16 holding value * 2^-112: cvt to f16, whose exponent field
// is moved into bf16's (exact, and never subnormal).
__device__ __forceinline__ uint32_t e4m3x2_to_bf16x2_shifted(uint32_t pair) {
  uint32_t h;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h) : "h"(static_cast<unsigned short>(pair & 0xffffu)));
  return ((h >> 3) & 0x0fff0fffu) | (h & 0x80008000u);
}

// Two e4m3 (low byte first) to two f16 (exact: every e4m3 value is a normal f16).
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t pair) {
  uint32_t h;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h) : "h"(static_cast<unsigned short>(pair & 0xffffu)));
  return h;
}

// Byte J of v (e4m3: s eeee mmm) as an fp32 holding its value times 2^-120: moved to bits 27..20
// by an arithmetic shift, which also copies s into bits 31..28; the mask keeps s in bit 31 and
// eeee mmm in bits 26..20, so eeee lands in the low four bits of fp32's exponent and mmm at the top
// of its mantissa. e4m3 subnormals (eeee = 0) become fp32 subnormals of the same 2^-120 scale, which
// the FMA takes as they are (no flush to zero in this build). NaN bytes are not expected in weights.
template <int J>
__device__ __forceinline__ float e4m3_shifted(uint32_t v) {
  return __int_as_float((int32_t(v << (24 - 8 * J)) >> 4) & int32_t(0x87f00000u));
}

// The 16 bytes of w (e4m3, each times 2^-120 as above) dotted with 16 x values, in order, fp32.
__device__ __forceinline__ float dot16_shifted(const uint4& w, const float4 (&x)[4]) {
  float d = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = word_of(w, i);
    d = fmaf(e4m3_shifted<0>(v), x[i].x, d);
    d = fmaf(e4m3_shifted<1>(v), x[i].y, d);
    d = fmaf(e4m3_shifted<2>(v), x[i].z, d);
    d = fmaf(e4m3_shifted<3>(v), x[i].w, d);
  }
  return d;
}

// c += a b for one m16n8k16 bf16 step, fp32 accumulation.
__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// c += a b for one m16n8k16 f16 step, fp32 accumulation.
__device__ __forceinline__ void mma_f16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

}  // namespace troupe::kernels::fp8_stream
