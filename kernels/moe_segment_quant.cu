// moe_segment_quant.hpp's kernels on fp8_quant_lanes.cuh's lanes (one warp per row and two K
// blocks; the codes of fp8_quant.cu bit for bit); the row's segment found once a warp, by binary
// search in offsets. (One warp a block with 2-byte loads ran gather_quant at about 1 TB/s in R1's
// 4,096-token prefill, 0.76 ms a layer.)
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/fp8_quant.hpp"
#include "kernels/fp8_quant_lanes.cuh"
#include "kernels/moe_segment_quant.hpp"

namespace troupe::kernels {
namespace {

using namespace fp8_lanes;

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

template <typename XT, bool kVec>
__global__ void __launch_bounds__(kFp8QuantWarpsPerBlock * 32)
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
__global__ void __launch_bounds__(kFp8QuantWarpsPerBlock * 32)
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

template <typename XT>
cudaError_t launch_gather(const XT* x, const int32_t* sorted_slots, int32_t top_k, const int32_t* offsets,
                          int32_t num_segments, uint8_t* x_fp8, float* x_scale, int64_t num_positions, int64_t k,
                          cudaStream_t stream) {
  if (bad_args(num_positions, k, num_segments) || top_k < 1) return cudaErrorInvalidValue;
  if (num_positions == 0) return cudaSuccess;
  const int64_t num_kb = fp8_num_blocks(k);
  if (grid_blocks(num_positions, num_kb) > INT32_MAX) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(grid_blocks(num_positions, num_kb))), block(kFp8QuantWarpsPerBlock * 32);
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
  if (grid_blocks(num_positions, num_kb) > INT32_MAX) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(grid_blocks(num_positions, num_kb))), block(kFp8QuantWarpsPerBlock * 32);
  if (vector_path(gate_up, act_fp8, inter))
    moe_silu_quant_kernel<true><<<grid, block, 0, stream>>>(gate_up, offsets, num_segments, act_fp8, act_scale,
                                                            num_positions, inter, num_kb);
  else
    moe_silu_quant_kernel<false><<<grid, block, 0, stream>>>(gate_up, offsets, num_segments, act_fp8, act_scale,
                                                             num_positions, inter, num_kb);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
