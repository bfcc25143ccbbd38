#pragma once
// The merge of split-KV partials, shared by the kernels that merge them so that each gives the same
// fp32 values: mla_decode.cu's combine and mla_absorb.cu's merging unabsorb (mla_decode.hpp's
// workspace), attention_decode.cu's reduce kernel (attention_decode.hpp's). Both layouts keep, per
// item (token, head) of P partitions, P partial rows, then P maxima (log2 domain) and P sums:
// partition p weighs w_p = 2^(max_p - M) (M the largest maximum; 0 for an empty partition, whose
// maximum is -inf), the merged row is sum_p w_p row_p / sum_p w_p sum_p. The partials are read
// with plain loads: by a kernel launched after the one that wrote them.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace troupe::kernels::split_kv {

// One warp, every lane: w_s[p] for the item's partitions (lanes take p = lane, lane + 32, ...) and
// the returned 1 / sum_p w_p sum_p (the same in every lane). Other lanes' w_s entries are read
// after a barrier.
__device__ __forceinline__ float weigh(const float* __restrict__ maxima, const float* __restrict__ sums, int parts,
                                       int lane, float* w_s) {
  float block_max = -INFINITY;
  for (int p = lane; p < parts; p += 32) block_max = fmaxf(block_max, maxima[p]);
#pragma unroll
  for (int k = 16; k > 0; k /= 2) block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, k));
  const float max_use = block_max == -INFINITY ? 0.0f : block_max;
  float total = 0.0f;
  for (int p = lane; p < parts; p += 32) {
    const float w = exp2f(maxima[p] - max_use);  // 0 for an empty partition
    total += sums[p] * w;
    w_s[p] = w;
  }
#pragma unroll
  for (int k = 16; k > 0; k /= 2) total += __shfl_xor_sync(0xffffffffu, total, k);
  return 1.0f / total;
}

// One merged column: sum_p col[p * stride] * w_s[p] in partition order, 8 loads in flight.
__device__ __forceinline__ float merge_column(const float* __restrict__ col, int64_t stride, int parts,
                                              const float* w_s) {
  constexpr int kUnroll = 8;
  float acc = 0.0f;
  int p = 0;
  for (; p + kUnroll <= parts; p += kUnroll) {
    float v[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) v[k] = col[int64_t(p + k) * stride];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) acc += v[k] * w_s[p + k];
  }
  for (; p < parts; ++p) acc += col[int64_t(p) * stride] * w_s[p];
  return acc;
}

}  // namespace troupe::kernels::split_kv
