#pragma once
// Split-KV ("flash-decoding") paged attention in fp32 for queries that are few or see long
// contexts: each (query token, q head) is split into partitions of the key range, each handled by
// its own block, which writes a partial (max, sum, unnormalized output) to a workspace; a reduce
// kernel merges them. With one partition the blocks write the output directly (no workspace).
// Works for any query token: token t (sequence seq_of_token[t], position positions[t]) attends to
// its sequence's cached keys [0, positions[t]]. The cache layout is runtime/kv_cache.hpp's.
// Within a block, 8 warps split the partition's keys; lanes split head_dim (float4 loads, or 8-byte
// loads of 4 bf16 from a bf16 cache).
// GQA groups of 2, 4 or 8 q heads (group * head_dim <= 1024) take one block per (query token, kv
// head, partition) computing the whole group, so K/V are read once per group; other shapes take
// one block per (query token, q head, partition).
// These kernels compute in fp32 on CUDA cores: per key a warp-wide shuffle reduction per q head,
// latency-bound rather than bandwidth-bound. A bf16 cache of GQA groups 1..16 at head_dim 64, 128,
// 256 takes the tensor-core kernel of attention_decode_mma.hpp instead (the backend's dispatch),
// which shares this header's partition contract, workspace layout and reduce kernel.
// Three layers: the __global__ kernels (attention_decode.cu), these launchers, and the CPU
// reference shared by every attention kernel, paged_attention_ref (paged_attention.hpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

constexpr int64_t kDecodeMinPartitionKeys = 128;  // no partition is split below this many keys
constexpr int64_t kDecodeMinGroupPartitionKeys = 32;  // the same for the grouped kernel (below)
constexpr int64_t kDecodeMaxPartitions = 128;

#ifdef TROUPE_HAVE_CUDA
// head_dim 16, 32, 64, 128 or 256.
bool decode_attention_supports(int64_t head_dim);

// How many partitions to split each query's keys into so that num_tokens * num_heads * partitions
// blocks fill the GPU (about two per SM), no partition shorter than kDecodeMinPartitionKeys.
// (One block per (token, q head, partition).)
int64_t decode_num_partitions(int64_t num_tokens, int64_t num_heads, int64_t max_context, int64_t num_sms);
// The same for the kernel launch_decode_attention_f32 picks for these heads: with the grouped
// kernel, num_tokens * num_kv_heads * partitions blocks and partitions down to
// kDecodeMinGroupPartitionKeys keys. Any partition count is correct; this one is the fast one.
int64_t decode_num_partitions(int64_t num_tokens, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                              int64_t max_context, int64_t num_sms);
// Keys per partition: partition p covers keys [p * partition_keys, (p + 1) * partition_keys).
int64_t decode_partition_keys(int64_t max_context, int64_t num_partitions);
// Floats of workspace launch_decode_attention_f32 needs (0 for one partition):
// [num_tokens, num_heads, num_partitions, head_dim] outputs, then maxima and sums.
int64_t decode_workspace_floats(int64_t num_tokens, int64_t num_heads, int64_t head_dim, int64_t num_partitions);

// Device pointers. q, out: [total_tokens, num_heads, head_dim] fp32; k_cache, v_cache:
// [num_blocks, block_size, num_kv_heads, head_dim] fp32; positions, seq_of_token: [total_tokens]
// i32; tokens: [num_tokens] i32, the token indices to compute (nullptr: tokens 0 .. num_tokens-1);
// block_tables: [num_seqs, max_blocks] i32. num_partitions and partition_keys from the helpers
// above with max_context >= every computed token's position + 1, or partition_keys 0: each token's
// context split evenly into the partitions, none shorter than kDecodeMinGroupPartitionKeys keys
// (the grouped kernel) or kDecodeMinPartitionKeys (the other), so a short context leaves the last
// partitions empty (a launch independent of the contexts: split_kv_partials.cuh's
// partition_length); workspace: at least
// decode_workspace_floats floats (nullptr when that is 0). Unsupported shapes give
// cudaErrorInvalidValue; num_tokens == 0 does nothing.
cudaError_t launch_decode_attention_f32(const float* q, const float* k_cache, const float* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, int64_t num_partitions,
                                        int64_t partition_keys, float* workspace, float* out, cudaStream_t stream);
// The same over a bf16 cache (bf16 bits, 8-byte loads of 4 elements, widened to fp32); q, the
// workspace and out stay fp32.
cudaError_t launch_decode_attention_f32(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, int64_t num_partitions,
                                        int64_t partition_keys, float* workspace, float* out, cudaStream_t stream);

// The reduce kernel alone: merges the num_partitions > 1 partials of `workspace` (the layout above,
// maxima and sums in the log2 domain) into out rows tokens[i] (or i). The launchers above run it
// after their partition kernel, as launch_decode_attention_mma (attention_decode_mma.hpp) does.
// num_partitions <= 1 or num_tokens == 0 does nothing.
cudaError_t launch_decode_attention_reduce(const int32_t* tokens, int64_t num_tokens, int64_t num_heads,
                                           int64_t head_dim, int64_t num_partitions, const float* workspace,
                                           float* out, cudaStream_t stream);

// The same over an fp8 cache (e4m3 bytes, 4-byte loads of 4 elements, widened to fp32): k_scale
// folds into the score scale and v_scale multiplies the output (the softmax weights sum to 1), so
// the result is paged_attention_ref's over the dequantized cache up to fp32 rounding.
cudaError_t launch_decode_attention_f32(const float* q, const uint8_t* k_cache, const uint8_t* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, float k_scale, float v_scale,
                                        int64_t num_partitions, int64_t partition_keys, float* workspace, float* out,
                                        cudaStream_t stream);
#endif

}  // namespace troupe::kernels
