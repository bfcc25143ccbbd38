#pragma once
// The lanes of the FP8 activation quantizers (fp8_quant.cu, moe_segment_quant.cu): one warp per
// (row, pair of 128-channel K blocks); half-warp h the block 2 j + h, lane l of it the 8
// consecutive channels [8 (l % 16), + 8): 16-byte loads and 8-byte stores where k is a multiple
// of 8 and the buffers aligned (kVec), element by element otherwise. A block's amax, scale and
// roundings are fp8_quant.hpp's formula (a max is the same in any order), so every layout of the
// lanes gives the same codes bit for bit. (One warp a block with lane l on channels l + 32 j moved
// 2-byte loads and 1-byte stores: about 1 TB/s on R1's 4,096-token prefill rows.)
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/bf16_stream.cuh"
#include "kernels/fp8_quant.hpp"

namespace troupe::kernels::fp8_lanes {

constexpr int kFp8QuantWarpsPerBlock = 8;

constexpr int kLaneChannels = 8;  // 16 lanes a 128-channel block, a warp two blocks

// v = channels [c, c + 8) of row (zero past k). kVec: k % 8 == 0 and row 16-byte aligned, so the
// eight are all in or all out.
template <bool kVec>
__device__ __forceinline__ void load8(const float* row, int64_t c, int64_t k, float (&v)[kLaneChannels]) {
  if constexpr (kVec) {
    float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
    if (c < k) {
      a = __ldg(reinterpret_cast<const float4*>(row + c));
      b = __ldg(reinterpret_cast<const float4*>(row + c + 4));
    }
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
#pragma unroll
    for (int j = 0; j < kLaneChannels; ++j) v[j] = c + j < k ? row[c + j] : 0.0f;
  }
}
template <bool kVec>
__device__ __forceinline__ void load8(const uint16_t* row, int64_t c, int64_t k, float (&v)[kLaneChannels]) {
  if constexpr (kVec) {
    uint4 a = make_uint4(0u, 0u, 0u, 0u);
    if (c < k) a = __ldg(reinterpret_cast<const uint4*>(row + c));
    bf16_stream::widen8(a, v);
  } else {
#pragma unroll
    for (int j = 0; j < kLaneChannels; ++j) v[j] = c + j < k ? bf16_stream::bf16_lo(row[c + j]) : 0.0f;
  }
}

// Quantizes the lane's eight values (channels [c, c + 8) of K block kb of row p; every lane of the
// warp calls it, a half-warp past the last block with zeros) and writes them with the block's
// scale; [first, first + count) is row p's segment.
template <bool kVec>
__device__ __forceinline__ void quantize8(const float (&v)[kLaneChannels], int lane, int64_t p, int64_t kb, int64_t c,
                                          int64_t k, int64_t num_kb, int64_t first, int64_t count, uint8_t* out_fp8,
                                          float* out_scale) {
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kLaneChannels; ++j) amax = fmaxf(amax, fabsf(v[j]));
#pragma unroll
  for (int o = 8; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));  // within the half
  amax = fmaxf(amax, kFp8MinAmax);
  const float inv = 448.0f / amax;
  uint8_t* dst = out_fp8 + p * k + c;
  if constexpr (kVec) {
    if (c < k) {
      uint32_t w[2] = {0u, 0u};
#pragma unroll
      for (int j = 0; j < kLaneChannels; ++j)
        w[j / 4] |= uint32_t(__nv_cvt_float_to_fp8(v[j] * inv, __NV_SATFINITE, __NV_E4M3)) << (8 * (j % 4));
      *reinterpret_cast<uint2*>(dst) = make_uint2(w[0], w[1]);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kLaneChannels; ++j)
      if (c + j < k) dst[j] = uint8_t(__nv_cvt_float_to_fp8(v[j] * inv, __NV_SATFINITE, __NV_E4M3));
  }
  if (lane % 16 == 0 && kb < num_kb) out_scale[num_kb * first + kb * count + (p - first)] = amax / 448.0f;
}

// This warp's row p and block kb, its lane's first channel c; false for a warp past the work (the
// whole warp: warp-uniform).
struct WarpWork {
  int64_t p, kb, c;
};
__device__ __forceinline__ bool warp_work(int64_t num_positions, int64_t num_kb, WarpWork& w) {
  const int64_t pairs = (num_kb + 1) / 2;
  const int64_t warp = int64_t(blockIdx.x) * kFp8QuantWarpsPerBlock + threadIdx.x / 32;
  if (warp >= num_positions * pairs) return false;
  const int lane = int(threadIdx.x % 32);
  w.p = warp / pairs;
  w.kb = (warp % pairs) * 2 + lane / 16;
  w.c = w.kb * kFp8BlockSize + kLaneChannels * (lane % 16);
  return true;
}

// Blocks of kFp8QuantWarpsPerBlock warps for num_positions rows of num_kb K blocks.
inline int64_t grid_blocks(int64_t num_positions, int64_t num_kb) {
  return (num_positions * ((num_kb + 1) / 2) + kFp8QuantWarpsPerBlock - 1) / kFp8QuantWarpsPerBlock;
}

// The 16-byte loads and 8-byte stores need k % 8 == 0 and aligned buffers.
inline bool vector_path(const void* in, const void* out, int64_t k) {
  return k % kLaneChannels == 0 && reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
}

}  // namespace troupe::kernels::fp8_lanes
