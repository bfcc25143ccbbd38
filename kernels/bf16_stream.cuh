#pragma once
// Device pieces shared by the kernels that stream bf16 weights with 16-byte loads and sum on CUDA
// cores (gemv.cu's decode GEMV, mla_absorb.cu's absorption products): the streaming weight load,
// bf16 widening (also the FP8 quantizers' and bf16_to_f32's), and the lane reduce-scatter that
// leaves each lane one of a warp's C sums.
#include <cstdint>

namespace troupe::kernels::bf16_stream {

constexpr unsigned kFullMask = 0xffffffffu;

__host__ __device__ constexpr int next_pow2(int v) { return v <= 1 ? 1 : 2 * next_pow2((v + 1) / 2); }

// 16 bytes of a weight read once (not kept in L1, which holds the activations), zeros when !valid.
// Predicated, so a step's loads issue back to back; not volatile: weights are written by no kernel,
// so the compiler may issue these early (also before griddepcontrol.wait).
__device__ __forceinline__ uint4 load_weights(const uint16_t* p, bool valid) {
  uint4 v;
  asm("{\n"
      "  .reg .pred p;\n"
      "  setp.ne.b32 p, %5, 0;\n"
      "  mov.b32 %0, 0;\n  mov.b32 %1, 0;\n  mov.b32 %2, 0;\n  mov.b32 %3, 0;\n"
      "  @p ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      "}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "r"(int(valid)));
  return v;
}

// A 32-bit word holds two bf16: the lower address (element 2i) in the low half.
__device__ __forceinline__ float bf16_lo(uint32_t word) { return __uint_as_float(word << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t word) { return __uint_as_float(word & 0xffff0000u); }

// Eight bf16 (16 bytes) as fp32, in address order.
__device__ __forceinline__ void widen8(const uint4& v, float (&f)[8]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    f[2 * k] = bf16_lo(words[k]);
    f[2 * k + 1] = bf16_hi(words[k]);
  }
}

// One stage of a reduce-scatter over the lanes l and l ^ offset: both hold v[0, 2 HALF); the lane
// with the offset bit set keeps the upper half, its partner the lower, each adding the other's
// copy: afterwards v[j] (j < HALF) is the pair's sum of index j + (upper ? HALF : 0).
template <int HALF, int N>
__device__ __forceinline__ void fold_half(float (&v)[N], int lane, int offset) {
  static_assert(2 * HALF <= N, "two halves");
  const bool upper = (lane & offset) != 0;
#pragma unroll
  for (int j = 0; j < HALF; ++j) {
    const float send = upper ? v[j] : v[j + HALF];
    const float keep = upper ? v[j + HALF] : v[j];
    v[j] = keep + __shfl_xor_sync(kFullMask, send, offset);
  }
}

// Sums v[i] over the 32 lanes for every i < C (a power of two <= 32). Afterwards v[0] of lane l
// holds the total of index l / (32 / C): each stage halves the values a lane keeps, so C values
// cost C - 1 + (5 - log2 C) shuffles instead of 5 C. Templates keep every index a compile-time
// constant (registers, no local memory). Call as reduce_scatter<C / 2, 16>(v, lane).
template <int HALF, int OFFSET, int C>
__device__ __forceinline__ void reduce_scatter(float (&v)[C], int lane) {
  if constexpr (HALF >= 1) {
    fold_half<HALF>(v, lane, OFFSET);
    reduce_scatter<HALF / 2, OFFSET / 2>(v, lane);
  } else if constexpr (OFFSET >= 1) {
    v[0] += __shfl_xor_sync(kFullMask, v[0], OFFSET);
    reduce_scatter<0, OFFSET / 2>(v, lane);
  }
}

}  // namespace troupe::kernels::bf16_stream
