#pragma once
// MLA prefill in the expanded form (as transformers computes it):
//   1. gather: each sequence's cached entries (mla_decode.hpp's latent cache layout) into dense
//      latent [ctx, kv_lora] and k_pe [ctx, rope], fp32 or (bf16 cache only) bf16;
//   2. the caller expands: kv = latent @ kv_b_proj^T, [ctx, H * (nope + v_dim)] (per head
//      [k_nope | v]);
//   3. causal attention of the sequence's num_new last tokens: k_j = [k_nope_j,h | k_pe_j],
//      v_j = v_j,h; query i sits at position ctx - num_new + i and sees keys [0, that position].
// Three attention kernels:
//   - Hopper warpgroup MMA (mla_prefill_wgmma.cu; R1's dims, the tensor-core kernel's arguments and
//     tile list; the backend's on sm_90);
//   - tensor cores (mla_prefill_mma.cu; R1's dims nope 128, rope 64, v 128; bf16 kv / k_pe, q fp32
//     rounded to bf16 in the kernel): flash attention, one CTA per (tile of kMlaPrefillTileRows
//     query rows of one sequence, head), many sequences per launch through a tile list;
//   - fp32 SIMT (mla_prefill.cu; any dims up to 256, fp32 kv): one block per (query, head), 8 warps
//     splitting the keys with an online softmax, one sequence per launch (the fp32 backend's, exact).
// Three layers: the kernels, these launchers, and the CPU references (mla_prefill_ref.cpp: fp32
// dots, fp64 softmax sums).
#include <cstdint>
#include <vector>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// Query rows per CTA of the tensor-core kernel (the tile list's granularity): 64 (16 rows per warp,
// Q fragments in registers) or 128 (32 rows per warp, Q from shared memory, each K / V fragment
// used twice; the backend's: 2.88 ms against 3.36 ms for 4,096 tokens x 128 heads on an H200).
constexpr int64_t kMlaPrefillTileRows = 128;
// The same for the Hopper wgmma kernel (one warpgroup, 64-key tiles, two CTAs an SM): 442 TFLOP/s
// at 4,096 tokens on the H200 against 420 for 128 rows and 128 keys (dsv3_mla_bench).
constexpr int64_t kMlaPrefillWgmmaTileRows = 64;

// CPU references. cache: [num_blocks, block_size, 1, kv_lora + rope] fp32 or bf16 bits; table: the
// sequence's block ids; latent: [ctx, kv_lora]; k_pe: [ctx, rope].
void mla_gather_latent_ref(const float* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                           int64_t kv_lora, int64_t rope, float* latent, float* k_pe);
void mla_gather_latent_ref(const uint16_t* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                           int64_t kv_lora, int64_t rope, float* latent, float* k_pe);
// q: [num_new, H, nope + rope]; kv: [ctx, H * (nope + v_dim)]; k_pe: [ctx, rope]; out: [num_new, H, v_dim].
void mla_prefill_attention_ref(const float* q, const float* kv, const float* k_pe, int64_t num_new, int64_t ctx,
                               int64_t num_heads, int64_t nope, int64_t rope, int64_t v_dim, float scale, float* out);

// The tensor-core kernel's work list: per sequence (query rows [q_begin, q_begin + num_new) of the
// batch, context ctx >= num_new, keys at rows [key_begin, key_begin + ctx) of kv / k_pe), tiles of
// up to tile_rows rows, 4 ints each {token0, num_rows, pos0, key0}, the longest first.
struct MlaPrefillSeq {
  int64_t q_begin, num_new, ctx, key_begin;
};
// Empty when a sequence is malformed (num_new < 1, ctx < num_new, negative offsets).
std::vector<int32_t> mla_prefill_tiles(const std::vector<MlaPrefillSeq>& seqs,
                                       int64_t tile_rows = kMlaPrefillTileRows);

#ifdef __CUDACC__
// One entry of that list as the kernels read it (tiles[4 index ..]): query rows token0 .. token0 +
// num_rows - 1, row r at position pos0 + r seeing keys key0 + [0, pos0 + r]; num_keys = pos0 +
// num_rows, the keys some row sees.
struct MlaPrefillTile {
  int token0, num_rows, pos0, num_keys;
  int64_t key0;
};
__device__ __forceinline__ MlaPrefillTile mla_prefill_tile(const int32_t* tiles, unsigned index) {
  const int4 t = reinterpret_cast<const int4*>(tiles)[index];
  return {t.x, t.y, t.z, t.z + t.y, t.w};
}
#endif

#ifdef TROUPE_HAVE_CUDA
// nope + rope <= 256 and v_dim <= 256 (the SIMT kernel).
bool mla_prefill_supports(int64_t nope, int64_t rope, int64_t v_dim);
// nope 128, rope 64, v_dim 128 (the tensor-core kernel).
bool mla_prefill_mma_supports(int64_t nope, int64_t rope, int64_t v_dim);
// Device pointers, shapes as the references; ctx == 0 or num_new == 0 does nothing.
cudaError_t launch_mla_gather_latent_f32(const float* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                                         int64_t kv_lora, int64_t rope, float* latent, float* k_pe,
                                         cudaStream_t stream);
cudaError_t launch_mla_gather_latent_f32(const uint16_t* cache, const int32_t* table, int64_t block_size,
                                         int64_t ctx, int64_t kv_lora, int64_t rope, float* latent, float* k_pe,
                                         cudaStream_t stream);
// bf16 cache -> bf16 latent and k_pe (bit copies).
cudaError_t launch_mla_gather_latent_bf16(const uint16_t* cache, const int32_t* table, int64_t block_size,
                                          int64_t ctx, int64_t kv_lora, int64_t rope, uint16_t* latent,
                                          uint16_t* k_pe, cudaStream_t stream);
// num_new <= ctx; unsupported dims give cudaErrorInvalidValue.
cudaError_t launch_mla_prefill_attention_f32(const float* q, const float* kv, const float* k_pe, int64_t num_new,
                                             int64_t ctx, int64_t num_heads, int64_t nope, int64_t rope,
                                             int64_t v_dim, float scale, float* out, cudaStream_t stream);
// q: [num_tokens, H, 192] fp32; kv: [num_keys, H, 256] bf16; k_pe: [num_keys, 64] bf16; tiles:
// mla_prefill_tiles' list of tile_rows (64 or 128) on the device (num_tiles x 4 ints); out:
// [num_tokens, H, 128] fp32, only the tiles' rows written. Unsupported dims or tile_rows give
// cudaErrorInvalidValue.
cudaError_t launch_mla_prefill_mma(const float* q, const uint16_t* kv, const uint16_t* k_pe, const int32_t* tiles,
                                   int64_t num_tiles, int64_t tile_rows, int64_t num_heads, int64_t nope, int64_t rope,
                                   int64_t v_dim, float scale, float* out, cudaStream_t stream);
// The same attention on Hopper's warpgroup MMA (mla_prefill_wgmma.cu), same arguments and tile
// list (tile_rows 64: one warpgroup a CTA, 128: two); key_tile: keys per K/V tile, 64, or 128 with
// 128-row tiles only, 0 the larger. cudaErrorNotSupported off sm_90 (the caller falls back to
// launch_mla_prefill_mma).
cudaError_t launch_mla_prefill_wgmma(const float* q, const uint16_t* kv, const uint16_t* k_pe, const int32_t* tiles,
                                     int64_t num_tiles, int64_t tile_rows, int64_t num_heads, int64_t nope,
                                     int64_t rope, int64_t v_dim, float scale, float* out, cudaStream_t stream,
                                     int64_t key_tile = 0);
#endif

}  // namespace troupe::kernels
