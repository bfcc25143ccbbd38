// moe_segment_quant.hpp's kernels: one warp per (row, pair of K blocks); half-warp h the block
// 2 j + h, lane l of it the 8 consecutive channels [8 (l % 16), + 8) (16-byte loads, 8-byte stores
// where k is a multiple of 8 and the buffers aligned; element by element otherwise). The block's
// amax, scale and roundings are fp8_quant.cu's (a max is the same in any order), so the codes
// match it bit for bit. The row's segment is found once a warp, by binary search in offsets.
// (The earlier one warp per block, lane l channels l + 32 j, moved 2-byte loads and 1-byte stores:
// about 1 TB/s in R1's 4,096-token prefill, 0.76 ms a layer for gather_quant.)
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/fp8_quant.hpp"
#include "kernels/moe_segment_quant.hpp"

namespace troupe::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kLaneChannels = 8;  // 16 lanes a 128-channel block, a warp two blocks

__device__ __forceinline__ float bf16_bits_to_float(uint32_t bits) { return __uint_as_float(bits << 16); }

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
    const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      v[2 * j] = bf16_bits_to_float(w[j] & 0xffffu);
      v[2 * j + 1] = bf16_bits_to_float(w[j] >> 16);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kLaneChannels; ++j) v[j] = c + j < k ? bf16_bits_to_float(row[c + j]) : 0.0f;
  }
}

// The segment holding position p: the last e with offsets[e] <= p (empty segments before it share
// its offset and are passed over).
__device__ __forceinline__ int32_t segment_of(const int32_t* offsets, int32_t num_segments, int32_t p) {
  int32_t lo = 0, hi = num_segments;  // offsets[lo] <= p < offsets[hi]
  while (hi - lo > 1) {
    const int32_t mid = (lo + hi) / 2;
    if (offsets[mid] <= p) lo = mid; else hi = mid;
  }
  return lo;
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
  const int64_t warp = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (warp >= num_positions * pairs) return false;
  const int lane = int(threadIdx.x % 32);
  w.p = warp / pairs;
  w.kb = (warp % pairs) * 2 + lane / 16;
  w.c = w.kb * kFp8BlockSize + kLaneChannels * (lane % 16);
  return true;
}

template <typename XT, bool kVec>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    moe_gather_quant_kernel(const XT* __restrict__ x, const int32_t* __restrict__ sorted_slots, int32_t top_k,
                            const int32_t* __restrict__ offsets, int32_t num_segments, uint8_t* __restrict__ x_fp8,
                            float* __restrict__ x_scale, int64_t num_positions, int64_t k, int64_t num_kb) {
  WarpWork w;
  if (!warp_work(num_positions, num_kb, w)) return;
  const XT* row = x + int64_t(sorted_slots[w.p] / top_k) * k;
  float v[kLaneChannels];
  load8<kVec>(row, w.c, k, v);
  const int32_t e = segment_of(offsets, num_segments, int32_t(w.p));
  const int64_t first = offsets[e];
  quantize8<kVec>(v, int(threadIdx.x % 32), w.p, w.kb, w.c, k, num_kb, first, offsets[e + 1] - first, x_fp8, x_scale);
}

template <bool kVec>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    moe_silu_quant_kernel(const uint16_t* __restrict__ gate_up, const int32_t* __restrict__ offsets,
                          int32_t num_segments, uint8_t* __restrict__ act_fp8, float* __restrict__ act_scale,
                          int64_t num_positions, int64_t inter, int64_t num_kb) {
  WarpWork w;
  if (!warp_work(num_positions, num_kb, w)) return;
  const uint16_t* row = gate_up + w.p * 2 * inter;
  float g[kLaneChannels], u[kLaneChannels], v[kLaneChannels];
  load8<kVec>(row, w.c, inter, g);
  load8<kVec>(row + inter, w.c, inter, u);
#pragma unroll
  for (int j = 0; j < kLaneChannels; ++j)  // mlp_activation.cu's formula and bf16 rounding, widened again
    v[j] = w.c + j < inter ? __bfloat162float(__float2bfloat16_rn(g[j] / (1.0f + expf(-g[j])) * u[j])) : 0.0f;
  const int32_t e = segment_of(offsets, num_segments, int32_t(w.p));
  const int64_t first = offsets[e];
  quantize8<kVec>(v, int(threadIdx.x % 32), w.p, w.kb, w.c, inter, num_kb, first, offsets[e + 1] - first, act_fp8,
                  act_scale);
}

bool bad_args(int64_t num_positions, int64_t k, int32_t num_segments) {
  return num_positions < 0 || k <= 0 || num_segments < 1 || bad_rows(num_positions);
}

unsigned warp_blocks(int64_t num_positions, int64_t num_kb) {
  return unsigned((num_positions * ((num_kb + 1) / 2) + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

// The 16-byte loads and 8-byte stores need k % 8 == 0 and aligned buffers.
bool vector_path(const void* in, const void* out, int64_t k) {
  return k % kLaneChannels == 0 && reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
}

template <typename XT>
cudaError_t launch_gather(const XT* x, const int32_t* sorted_slots, int32_t top_k, const int32_t* offsets,
                          int32_t num_segments, uint8_t* x_fp8, float* x_scale, int64_t num_positions, int64_t k,
                          cudaStream_t stream) {
  if (bad_args(num_positions, k, num_segments) || top_k < 1) return cudaErrorInvalidValue;
  if (num_positions == 0) return cudaSuccess;
  const int64_t num_kb = fp8_num_blocks(k);
  if ((num_positions * ((num_kb + 1) / 2) + kWarpsPerBlock - 1) / kWarpsPerBlock > INT32_MAX) return cudaErrorInvalidValue;
  const dim3 grid(warp_blocks(num_positions, num_kb)), block(kWarpsPerBlock * 32);
  if (vector_path(x, x_fp8, k))
    moe_gather_quant_kernel<XT, true><<<grid, block, 0, stream>>>(x, sorted_slots, top_k, offsets, num_segments,
                                                                  x_fp8, x_scale, num_positions, k, num_kb);
  else
    moe_gather_quant_kernel<XT, false><<<grid, block, 0, stream>>>(x, sorted_slots, top_k, offsets, num_segments,
                                                                   x_fp8, x_scale, num_positions, k, num_kb);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_moe_gather_quant(const float* x, const int32_t* sorted_slots, int32_t top_k,
                                    const int32_t* offsets, int32_t num_segments, uint8_t* x_fp8, float* x_scale,
                                    int64_t num_positions, int64_t k, cudaStream_t stream) {
  return launch_gather(x, sorted_slots, top_k, offsets, num_segments, x_fp8, x_scale, num_positions, k, stream);
}

cudaError_t launch_moe_gather_quant(const uint16_t* x, const int32_t* sorted_slots, int32_t top_k,
                                    const int32_t* offsets, int32_t num_segments, uint8_t* x_fp8, float* x_scale,
                                    int64_t num_positions, int64_t k, cudaStream_t stream) {
  return launch_gather(x, sorted_slots, top_k, offsets, num_segments, x_fp8, x_scale, num_positions, k, stream);
}

cudaError_t launch_moe_silu_quant(const uint16_t* gate_up, const int32_t* offsets, int32_t num_segments,
                                  uint8_t* act_fp8, float* act_scale, int64_t num_positions, int64_t inter,
                                  cudaStream_t stream) {
  if (bad_args(num_positions, inter, num_segments)) return cudaErrorInvalidValue;
  if (num_positions == 0) return cudaSuccess;
  const int64_t num_kb = fp8_num_blocks(inter);
  if ((num_positions * ((num_kb + 1) / 2) + kWarpsPerBlock - 1) / kWarpsPerBlock > INT32_MAX) return cudaErrorInvalidValue;
  const dim3 grid(warp_blocks(num_positions, num_kb)), block(kWarpsPerBlock * 32);
  if (vector_path(gate_up, act_fp8, inter))
    moe_silu_quant_kernel<true><<<grid, block, 0, stream>>>(gate_up, offsets, num_segments, act_fp8, act_scale,
                                                            num_positions, inter, num_kb);
  else
    moe_silu_quant_kernel<false><<<grid, block, 0, stream>>>(gate_up, offsets, num_segments, act_fp8, act_scale,
                                                             num_positions, inter, num_kb);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
