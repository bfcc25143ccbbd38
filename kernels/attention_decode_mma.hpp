#pragma once
// Tensor-core split-KV decode attention over a bf16 paged cache, for GQA groups of 1..16 q heads
// and head_dim 64, 128 or 256: what CudaBackend::decode_attention runs for a bf16 cache (the fp32
// CUDA-core kernels of attention_decode.hpp take fp32 caches and other shapes).
//
// Work unit: one CTA (4 warps) per (query token, kv head, partition of the token's keys). The
// group's q heads are the M rows of mma.sync m16n8k16 (bf16 in, fp32 accumulate; rows past the
// group are zero), keys the N side, so each K/V row is read from HBM once per group. Per tile of
// kDecodeMmaTileKeys = 64 keys: cp.async copies the tile's K and V rows into one of 3 shared stages
// (2 at head_dim 256), two tiles staying in flight while one is multiplied; warp w takes keys
// [16 w, 16 w + 16) of the tile: S = Q K^T (Q scaled by scale * log2 e, rounded to bf16 once),
// an online softmax of its own in fp32 (log2 domain), P rounded to bf16 in registers, O += P V.
// The warps' (max, sum, O) merge through shared memory at the end. Same partition contract and
// workspace as launch_decode_attention_f32 (attention_decode.hpp), whose reduce kernel merges
// the partitions.
//
// Precision: against paged_attention_ref (fp32 dots, fp64 softmax, the same bf16 K/V values) only
// q and P are rounded to bf16 (rms relative error ~1.6e-3 each): outputs move by ~2e-3 of their
// scale, NMSE ~5e-6.
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

constexpr int64_t kDecodeMmaTileKeys = 64;  // keys per K/V tile
// The shortest partition, in tiles: Llama-3-8B FP8 b1 at context 1,024 (8 partitions of 128 keys
// rather than 16 of 64) 3.060 / 3.080 against 3.125 / 3.133 ms, Qwen3-8B FP8 3.203 against 3.301;
// at context 2,048 3.229 against 3.219 (one H200 run, go67; TROUPE_DECODE_MIN_TILES=T overrides
// it for A/B runs).
constexpr int64_t kDecodeMmaMinPartitionTiles = 2;
constexpr int64_t kDecodeMmaMaxGroup = 16;  // q heads per kv head (the MMA's 16 rows)

#ifdef TROUPE_HAVE_CUDA
// head_dim 64, 128 or 256 and num_heads = group * num_kv_heads with group 1..16.
bool decode_attention_mma_supports(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim);

// Partitions per token so that num_tokens * num_kv_heads * partitions CTAs fill the GPU (two per
// SM: the head_dim 128 kernel's shared memory lets two reside), none shorter than
// kDecodeMmaMinPartitionTiles tiles. Any
// count up to kDecodeMaxPartitions is correct; this one is the fast one.
int64_t decode_mma_num_partitions(int64_t num_tokens, int64_t num_kv_heads, int64_t max_context, int64_t num_sms);

// Arguments as launch_decode_attention_f32's (attention_decode.hpp): q, out fp32 [total_tokens,
// num_heads, head_dim]; k_cache, v_cache bf16 bits [num_blocks, block_size, num_kv_heads,
// head_dim]; num_partitions, partition_keys from decode_mma_num_partitions and
// decode_partition_keys (or partition_keys 0: each token's context split evenly, none shorter than
// kDecodeMmaMinPartitionTiles tiles: split_kv_partials.cuh's partition_length); workspace:
// decode_workspace_floats floats (nullptr when 0). q and the caches must be 16-byte aligned.
// Unsupported shapes give cudaErrorInvalidValue; num_tokens == 0 does nothing.
cudaError_t launch_decode_attention_mma(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, int64_t num_partitions,
                                        int64_t partition_keys, float* workspace, float* out, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
