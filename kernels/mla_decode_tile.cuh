#pragma once
// What the tensor-core MLA decode kernels (mla_decode_mma.cu, mla_decode_mma64.cu,
// mla_decode_wgmma.cu) share around their different inner loops: the work of a CTA, (head tile,
// token, partition of the keys) from its grid position, where a row's 512 latent columns go (o_lat
// normalized for one partition, else the workspace partial that mla_decode.cu's combine kernel
// merges, with the row's maximum and sum), and the launch.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/mla_decode.hpp"
#include "kernels/mma_sync.cuh"
#include "kernels/split_kv_partials.cuh"

namespace troupe::kernels::mla_tile {

constexpr int kLora = 512;
constexpr float kLog2e = 1.4426950408889634f;

// CTA (blockIdx.x = head tile, .y = computed token i, .z = partition) of a launch over num_heads,
// whose gridDim.x tiles split the heads evenly (ceil(num_heads / gridDim.x) each, the last fewer).
// Token t = tokens[i] (tokens nullptr: i) attends to keys [begin, end) of its context [0,
// positions[t]]: partitions of partition_keys keys (0: its own context split evenly, none shorter than
// min_keys, the launch's kMlaMinPartitionKeys: split_kv::partition_length).
struct Work {
  int h0, i, part, num_partitions, heads, begin, end;
  const int32_t* table;  // the token's sequence's block table
};
__device__ __forceinline__ Work work_of_cta(const int32_t* positions, const int32_t* seq_of_token,
                                            const int32_t* tokens, const int32_t* block_tables, int max_blocks,
                                            int num_heads, int partition_keys, int min_keys) {
  Work w;
  const int tile = (num_heads + int(gridDim.x) - 1) / int(gridDim.x);
  w.h0 = int(blockIdx.x) * tile;
  w.i = int(blockIdx.y);
  w.part = int(blockIdx.z);
  w.num_partitions = int(gridDim.z);
  w.heads = min(tile, num_heads - w.h0);
  const int64_t t = tokens ? tokens[w.i] : w.i;
  w.table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
  const int context = positions[t] + 1;
  const int keys = split_kv::partition_length(context, w.num_partitions, partition_keys, min_keys);
  w.begin = w.part * keys;
  w.end = min(context, w.begin + keys);
  return w;
}

// Row `row` of the head tile: the start of its 512 columns and the factor its O is multiplied by.
__device__ __forceinline__ float* row_out(const Work& w, int num_heads, int row, float sum, float* workspace,
                                          float* o_lat, float* scale) {
  const int64_t item = int64_t(w.i) * num_heads + w.h0 + row;
  *scale = w.num_partitions == 1 ? 1.0f / sum : 1.0f;
  return w.num_partitions == 1 ? o_lat + item * kLora : workspace + (item * w.num_partitions + w.part) * kLora;
}
// With several partitions, the row's maximum (log2 domain) and sum for the combine kernel.
__device__ __forceinline__ void row_stats(const Work& w, int num_heads, int row, float max, float sum,
                                          float* workspace) {
  if (w.num_partitions == 1) return;
  const int64_t item = int64_t(w.i) * num_heads + w.h0 + row;
  const int64_t stats = int64_t(gridDim.y) * num_heads * w.num_partitions;
  float* maxima = workspace + stats * kLora;
  maxima[item * w.num_partitions + w.part] = max;
  maxima[stats + item * w.num_partitions + w.part] = sum;
}

// Whether the CTA's partition holds no key (one past a short context: split_kv::partition_length);
// then only its rows' maximum (-inf) and sum (0) are written, from which the merge knows to skip
// its partial rows (split_kv::Weights::used), and the CTA returns before staging Q. Never with one
// partition (every context holds a key).
__device__ __forceinline__ bool empty_partition(const Work& w, int num_heads, float* workspace) {
  if (w.begin < w.end) return false;
  for (int row = int(threadIdx.x); row < w.heads; row += int(blockDim.x))
    row_stats(w, num_heads, row, -INFINITY, 0.0f, workspace);
  return true;
}

// The tile's Q rows (576 fp32 each at q_src; rows past `heads` zeros) rounded to bf16, 16 bytes at
// a time: store(row, chunk of 8 values, packed) for the 64 x 72 chunks, kThreads threads from this
// one's `tid` on, kBatch pairs of float4 loads in flight each (so a CTA waits for a few rounds of
// loads, not one per chunk).
template <int kThreads, int kBatch, class Store>
__device__ __forceinline__ void stage_q(const float* q_src, int heads, int tid, Store store) {
  constexpr int kEntry = 576, kChunks = kEntry / 8, kUnits = int(kMlaHeadTile) * kChunks / kThreads;
  static_assert(int(kMlaHeadTile) * kChunks % kThreads == 0 && kUnits % kBatch == 0, "Q's units split evenly");
  using mma::pack_bf16x2;
#pragma unroll 1
  for (int first = 0; first < kUnits; first += kBatch) {
    float4 qa[kBatch], qb[kBatch];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const int u = tid + (first + k) * kThreads, r = u / kChunks, chunk = u % kChunks;
      qa[k] = qb[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (r < heads) {
        qa[k] = __ldg(reinterpret_cast<const float4*>(q_src + int64_t(r) * kEntry + chunk * 8));
        qb[k] = __ldg(reinterpret_cast<const float4*>(q_src + int64_t(r) * kEntry + chunk * 8 + 4));
      }
    }
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const int u = tid + (first + k) * kThreads;
      store(u / kChunks, u % kChunks,
            make_uint4(pack_bf16x2(qa[k].x, qa[k].y), pack_bf16x2(qa[k].z, qa[k].w), pack_bf16x2(qb[k].x, qb[k].y),
                       pack_bf16x2(qb[k].z, qb[k].w)));
    }
  }
}

// Launches `kernel` (the parameters every one of them takes) over (head tiles of up to head_tile
// heads, tokens, partitions) with `smem_bytes` of dynamic shared memory, as a programmatic dependent.
using Kernel = void (*)(const float*, const __nv_bfloat16*, const int32_t*, const int32_t*, const int32_t*,
                        const int32_t*, int, int, int, float, int, int, float*, float*);
inline cudaError_t launch(Kernel kernel, int threads, int smem_bytes, const float* q_abs, const uint16_t* cache,
                          const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                          int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                          int64_t num_heads, float scale, int64_t num_partitions, int64_t partition_keys,
                          float* workspace, float* o_lat, cudaStream_t stream, int64_t head_tile = kMlaHeadTile) {
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
      err != cudaSuccess)
    return err;
  const dim3 grid(unsigned((num_heads + head_tile - 1) / head_tile), unsigned(num_tokens),
                  unsigned(num_partitions));
  return launch_dependent(kernel, grid, dim3(unsigned(threads)), size_t(smem_bytes), stream, q_abs,
                          reinterpret_cast<const __nv_bfloat16*>(cache), positions, seq_of_token, tokens, block_tables,
                          int(max_blocks), int(block_size), int(num_heads), scale * kLog2e, int(partition_keys),
                          split_kv::split_min_keys(kMlaMinPartitionKeys), workspace, o_lat);
}

}  // namespace troupe::kernels::mla_tile
