#pragma once
// What the split-KV decode kernels share: how a token's keys are cut into partitions, and the merge
// of the partials, shared by the kernels that merge them so that each gives the same
// fp32 values: mla_decode.cu's combine and mla_absorb.cu's merging unabsorb (mla_decode.hpp's
// workspace), attention_decode.cu's reduce kernel (attention_decode.hpp's). Both layouts keep, per
// item (token, head) of P partitions, P partial rows, then P maxima (log2 domain) and P sums:
// partition p weighs w_p = 2^(max_p - M) (M the largest maximum; 0 for an empty partition, whose
// maximum is -inf), the merged row is sum_p w_p row_p / sum_p w_p sum_p. The partials are read
// with plain loads: by a kernel launched after the one that wrote them.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace troupe::kernels::split_kv {

// Keys per partition for a token whose context is `context` keys long: partition_keys when > 0 (a
// launch partitioned by its longest context), else the token's own context split evenly into the
// num_partitions partitions, none shorter than min_keys. A recorded step graph counts its
// partitions from the block tables' width (max_model_len), so a short context fills only its first
// partitions, each long enough to be worth a CTA, and leaves the rest empty, rather than spreading
// a few keys over every one (R1's 128 heads at max_model_len 32,768 would take 66 partitions of a
// 1,000-key context, 16 keys each, for 64-key tiles). Partition p covers keys [p keys, (p + 1) keys).
__device__ __forceinline__ int partition_length(int context, int num_partitions, int partition_keys, int min_keys) {
  return partition_keys > 0 ? partition_keys : max((context + num_partitions - 1) / num_partitions, min_keys);
}

// The min_keys a launcher passes its kernel: `kernel_min`, or 1 under TROUPE_SPLIT_MIN_KEYS=1
// (before stop 40's rule: each context spread over every partition; an A/B switch, read once).
inline int split_min_keys(int64_t kernel_min) {
  static const bool spread = [] {
    const char* env = std::getenv("TROUPE_SPLIT_MIN_KEYS");
    return env != nullptr && std::string_view(env) == "1";
  }();
  return spread ? 1 : int(kernel_min);
}

// A merge's weights: 1 / sum_p w_p sum_p, and how many leading partitions hold keys (the others,
// past the token's context, are empty: their rows weigh 0 and need not be written nor read).
struct Weights {
  float inv;
  int used;
};

// One warp, every lane: w_s[p] for the item's partitions (lanes take p = lane, lane + 32, ...) and
// the Weights (the same in every lane). A partition is empty when its maximum is -inf (no key);
// empty ones come last. Other lanes' w_s entries are read after a barrier.
__device__ __forceinline__ Weights weigh(const float* __restrict__ maxima, const float* __restrict__ sums, int parts,
                                         int lane, float* w_s) {
  float block_max = -INFINITY;
  int used = 0;
  for (int p = lane; p < parts; p += 32) {
    block_max = fmaxf(block_max, maxima[p]);
    if (maxima[p] != -INFINITY) used = p + 1;
  }
#pragma unroll
  for (int k = 16; k > 0; k /= 2) {
    block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, k));
    used = max(used, __shfl_xor_sync(0xffffffffu, used, k));
  }
  const float max_use = block_max == -INFINITY ? 0.0f : block_max;
  float total = 0.0f;
  for (int p = lane; p < parts; p += 32) {
    const float w = exp2f(maxima[p] - max_use);  // 0 for an empty partition
    total += sums[p] * w;
    w_s[p] = w;
  }
#pragma unroll
  for (int k = 16; k > 0; k /= 2) total += __shfl_xor_sync(0xffffffffu, total, k);
  return {1.0f / total, used};
}

// One merged column: sum_p col[p * stride] * w_s[p] over the `parts` partitions that hold keys
// (Weights::used), in partition order, 8 loads in flight. The empty ones weigh 0 and are not read:
// MLA's tensor-core kernels leave their rows unwritten.
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
