#pragma once
// Prefill attention on tensor cores: causal, GQA, K/V read from the paged fp32, bf16 or fp8 cache
// (runtime/kv_cache.hpp layout), FlashAttention-2's forward pass (online softmax, no [seq x seq]
// matrix) on mma.sync m16n8k16 with bf16 inputs and fp32 accumulation and softmax state.
//
// Work unit: one block of 4 warps per (query tile, kv head). A tile holds 128 rows (64 at head_dim
// 256), each row one (token, q head of the kv head's group) pair, heads fastest: row r is token
// first + r / group, head kv_head * group + r % group, so a K/V tile staged in shared memory serves
// the whole GQA group. A warp owns 32 rows (16 at head_dim 256); its S, P and O stay in registers
// and are written once at the end. Q, K and V are rounded to bf16 (Q after the scale); a bf16
// cache's K/V tiles are double-buffered cp.async copies, an fp8 or fp32 cache's are copied as
// stored and widened to bf16 in shared memory (exact for e4m3). Tiles past a warp's last position
// are skipped and the causal mask is applied only on tiles that cross a row's position. Tokens of a
// tile belong to one sequence and may start at any position (chunked prefill): a query at position
// p sees keys [0, p] of its sequence, which must already be cached. Details in attention_prefill.cu.
// Three layers: the __global__ kernel (attention_prefill.cu), these launchers, and the CPU
// reference shared by every attention kernel, paged_attention_ref (paged_attention.hpp), which
// computes in fp32/fp64 (this kernel's bf16 roundings are its only departure from it).
#include <cstdint>
#include <vector>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

#ifdef TROUPE_HAVE_CUDA
// head_dim 16, 32, 64, 128 or 256 and a GQA group (num_heads / num_kv_heads) no larger than a
// tile's rows.
bool prefill_attention_supports(int64_t head_dim, int64_t group);
// Tokens per query tile: the tile's rows (128, or 64 at head_dim 256) / group.
int64_t prefill_tokens_per_tile(int64_t head_dim, int64_t group);

// The query tiles of the sequences with more than one new token: [num_tiles, 3] i32 rows of
// {first token, end token (exclusive), sequence}, at most tokens_per_tile tokens each, the tiles
// that see the most keys first (load balance). query_start: [num_seqs + 1]; context_lens:
// [num_seqs] (host arrays of AttentionMetadata).
std::vector<int32_t> build_prefill_tiles(const int32_t* query_start, const int32_t* context_lens, int64_t num_seqs,
                                         int64_t tokens_per_tile);

// Device pointers. q, out: [num_tokens, num_heads, head_dim] fp32 (only the rows of the tiles'
// tokens are written); k_cache, v_cache: [num_blocks, block_size, num_kv_heads, head_dim] fp32;
// positions: [num_tokens] i32; tiles: from build_prefill_tiles with prefill_tokens_per_tile, on
// the device;
// block_tables: [num_seqs, max_blocks] i32. scale multiplies q.k. Unsupported shapes give
// cudaErrorInvalidValue; num_tiles == 0 does nothing.
cudaError_t launch_prefill_attention_bf16(const float* q, const float* k_cache, const float* v_cache,
                                          const int32_t* positions, const int32_t* tiles, int64_t num_tiles,
                                          const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                          int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                          float* out, cudaStream_t stream);
// The same over a bf16 cache (bf16 bits, copied into shared memory as they are). Cache bases must
// be 16-byte aligned (cudaErrorInvalidValue otherwise; fp32 caches too).
cudaError_t launch_prefill_attention_bf16(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                          const int32_t* positions, const int32_t* tiles, int64_t num_tiles,
                                          const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                          int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                          float* out, cudaStream_t stream);
// The same over an fp8 cache (e4m3 bytes, copied as stored, widened to bf16 exactly in shared
// memory): k_scale folds into the score scale and v_scale multiplies the output. Cache bases
// 16-byte aligned.
cudaError_t launch_prefill_attention_bf16(const float* q, const uint8_t* k_cache, const uint8_t* v_cache,
                                          const int32_t* positions, const int32_t* tiles, int64_t num_tiles,
                                          const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                          int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                          float k_scale, float v_scale, float* out, cudaStream_t stream);

// Hopper (sm_90) only: the same attention over a bf16 cache on warpgroup MMA
// (attention_prefill_wgmma.cu, flash_wgmma.cuh: two warpgroups a CTA, softmax overlapped with the
// products), at head_dim 128, with the same tiles (prefill_tokens_per_tile). cta_rows: a tile's
// rows per CTA, 64 (one warpgroup, two CTAs a tile and an SM) or 128 (two warpgroups); key_tile:
// keys per K/V tile, 64 or 128 (128 only with 128 rows). 0 takes 64 rows and 64 keys.
// cudaErrorInvalidValue where prefill_attention_wgmma_supports says no or for the sizes the
// launchers above refuse; cudaErrorNotSupported on any GPU but sm_90.
bool prefill_attention_wgmma_supports(int64_t head_dim, int64_t group);
cudaError_t launch_prefill_attention_wgmma(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                           const int32_t* positions, const int32_t* tiles, int64_t num_tiles,
                                           const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                           float* out, cudaStream_t stream, int64_t cta_rows = 0,
                                           int64_t key_tile = 0);
#endif

}  // namespace troupe::kernels
