// Hopper GQA prefill (attention_prefill.hpp): attention_prefill.cu's work split (query tiles of
// 128 rows of (token, q head of the group) pairs, heads fastest, per kv head, so a K/V tile serves
// the whole group) with flash_wgmma.cuh's loop: products on warpgroup MMA reading K and V from
// shared memory, the softmax of tile t overlapping P V of tile t - 1. A CTA of kGroups warpgroups
// takes 64 kGroups rows of a tile: two warpgroups the whole tile, or one warpgroup each half
// (blockIdx.y; two CTAs an SM). Head dim 128 over a bf16 cache; K and V come from the paged cache by cp.async (16-byte
// chunks of a row, the block table read per key), keys past the tile's last position zero-filled
// (their table entries may be -1 and their slots NaN). Q is rounded to bf16 unscaled; the softmax
// scales q.k by scale log2(e) in fp32. Precision as the mma.sync kernel: q, K, V and P bf16, every
// sum fp32.
#include <cuda_bf16.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/attention_prefill.hpp"
#include "kernels/flash_wgmma.cuh"
#include "kernels/wgmma.cuh"

namespace troupe::kernels {
namespace {

constexpr int kD = 128, kDBlocks = kD / 64, kChunks = kD / 8;  // 16-byte chunks of a row
constexpr float kLog2e = 1.4426950408889634f;
using flash_wgmma::pack_bf16x2;
using flash_wgmma::swizzled;

constexpr int kTileRows = 128;  // tile_rows at head_dim 128 (prefill_tokens_per_tile)

template <int kGroups, int kKeys>
__global__ void __launch_bounds__(128 * kGroups, kGroups == 1 ? 2 : 1)
    prefill_attention_wgmma_kernel(const float* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,
                                   const __nv_bfloat16* __restrict__ v_cache, const int32_t* __restrict__ positions,
                                   const int32_t* __restrict__ tiles, const int32_t* __restrict__ block_tables,
                                   int max_blocks, int block_size, int num_heads, int num_kv_heads, float scale_log2,
                                   float* __restrict__ out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using L = flash_wgmma::Layout<kGroups, kKeys, kDBlocks>;
  constexpr int kThreads = L::kThreads, kRows = L::kRows;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (wgmma::smem_address(smem_raw) + 1023u) & ~1023u;
  uint8_t* const smem = smem_raw + (base - wgmma::smem_address(smem_raw));
  // kv heads fastest in launch order: the tiles with the most keys (first in `tiles`) start first.
  const int group = num_heads / num_kv_heads, kv_head = int(blockIdx.x % unsigned(num_kv_heads));
  const int32_t* tile = tiles + 3 * int64_t(blockIdx.x / unsigned(num_kv_heads));
  const int token_begin = tile[0], token_end = tile[1];
  const int32_t* table = block_tables + int64_t(tile[2]) * max_blocks;
  const int row0 = kRows * int(blockIdx.y);                         // this CTA's first row of the tile
  const int num_rows = min((token_end - token_begin) * group, row0 + kRows);  // rows [row0, num_rows)
  if (num_rows <= row0) return;                                     // a half tile with no row
  const int num_keys = positions[token_begin + (num_rows - 1) / group] + 1;  // its last row sees the most
  const int num_tiles = (num_keys + kKeys - 1) / kKeys;
  const int tid = int(threadIdx.x), g = tid / 128, warp = (tid % 128) / 32, lane = tid % 32, c = lane % 4;

  // Tile t's K (or V) rows: thread tid copies chunk tid % 16 of keys tid / 16 + 16 i (every such
  // key has the same row % 8, so the swizzled destination moves by a constant per i); the key's
  // (table entry, offset in block) advance without a division per copy.
  // A copy is an asm with a memory clobber, so each table read waits for the copy before it; reading
  // the tile's entries first and then issuing the copies was measured on the H200 and was slower
  // (Llama-3-8B's 4,096-token prefill attention 24.3 ms against 20.6 at 128 rows, 31.4 against 24.5
  // at 64; bench/results/gpu_decode_llama3_8b_h200_2026-12-04_prefill_w*_tablefirst.json). Nsight
  // Compute on the 128-row variant in that prefill: 549 us a layer, 2 warps per scheduler, 0.45 of
  // them eligible, issue slots 34% busy (the mma.sync kernel: 510 us, 0.47 eligible).
  constexpr int kStep = kThreads / kChunks;
  const int key_first = tid / kChunks, chunk = tid % kChunks;
  const uint32_t dst_first = (chunk / 8) * L::kKBlock + swizzled(key_first, chunk % 8);
  auto load_rows = [&](const __nv_bfloat16* cache, int t, uint32_t dst) {
    int j = t * kKeys + key_first;
    int block = j / block_size, in_block = j - block * block_size;
#pragma unroll
    for (int i = 0; i < kKeys / kStep; ++i) {
      const bool valid = j < num_keys;
      int64_t row = 0;  // a valid address even when nothing is read
      if (valid) row = (int64_t(table[block]) * block_size + in_block) * num_kv_heads + kv_head;
      wgmma::cp_async16(dst + dst_first + i * kStep * 128, cache + row * kD + chunk * 8, valid);
      j += kStep;
      for (in_block += kStep; in_block >= block_size; in_block -= block_size) ++block;
    }
  };
  auto load_k = [&](int t) { load_rows(k_cache, t, L::k_stage(base, t)); };
  auto load_v = [&](int t) { load_rows(v_cache, t, L::v_stage(base, t)); };
  // Q rows as bf16 (rows past num_rows zero): row r is token token_begin + r / group, head
  // kv_head * group + r % group.
  auto load_q = [&] {
    for (int u = tid; u < kRows * kChunks; u += kThreads) {
      const int r = row0 + u / kChunks, chunk = u % kChunks;
      float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
      if (r < num_rows) {
        const int64_t t = token_begin + r / group, h = int64_t(kv_head) * group + r % group;
        const float* src = q + (t * num_heads + h) * kD + chunk * 8;
        a = __ldg(reinterpret_cast<const float4*>(src));
        b = __ldg(reinterpret_cast<const float4*>(src + 4));
      }
      *reinterpret_cast<uint4*>(smem + L::kQ + (chunk / 8) * L::kQBlock + swizzled(r - row0, chunk % 8)) =
          make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y), pack_bf16x2(b.z, b.w));
    }
  };
  // This thread's two rows and their positions (-1: a padding row, every key masked).
  const int r0 = row0 + 64 * g + 16 * warp + lane / 4;
  int row_pos[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = r0 + 8 * half;
    row_pos[half] = r < num_rows ? positions[token_begin + r / group] : -1;
  }
  float o[64], l_run[2];
  flash_wgmma::attend<kGroups, kKeys, kDBlocks>(base, g, num_tiles, scale_log2, load_q, load_k, load_v, row_pos, o, l_run);

  // out = O / sum: the quad's partial sums add up to the row's.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = l_run[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int r = r0 + 8 * half;
    if (r >= num_rows) continue;
    const int64_t t = token_begin + r / group, h = int64_t(kv_head) * group + r % group;
    const float inv = 1.0f / l;
    float* dst = out + (t * num_heads + h) * kD + 2 * c;
#pragma unroll
    for (int n = 0; n < kD / 8; ++n)
      *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[4 * n + 2 * half] * inv, o[4 * n + 2 * half + 1] * inv);
  }
#endif
}

template <int kGroups, int kKeys>
cudaError_t launch_variant(const float* q, const uint16_t* k_cache, const uint16_t* v_cache, const int32_t* positions,
                        const int32_t* tiles, int64_t num_tiles, const int32_t* block_tables, int64_t max_blocks,
                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads, float scale, float* out,
                        cudaStream_t stream) {
  auto* kernel = prefill_attention_wgmma_kernel<kGroups, kKeys>;
  constexpr int kBytes = flash_wgmma::Layout<kGroups, kKeys, kDBlocks>::kBytes;
  // Set at each launch: the attribute belongs to the current device (a process may drive several).
  if (const cudaError_t attr = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes);
      attr != cudaSuccess)
    return attr;
  kernel<<<dim3(unsigned(num_tiles * num_kv_heads), kTileRows / (64 * kGroups)), 128 * kGroups, kBytes, stream>>>(
      q, reinterpret_cast<const __nv_bfloat16*>(k_cache), reinterpret_cast<const __nv_bfloat16*>(v_cache), positions,
      tiles, block_tables, int(max_blocks), int(block_size), int(num_heads), int(num_kv_heads), scale * kLog2e, out);
  return cudaGetLastError();
}

}  // namespace

bool prefill_attention_wgmma_supports(int64_t head_dim, int64_t group) {
  return head_dim == kD && prefill_attention_supports(head_dim, group);
}

cudaError_t launch_prefill_attention_wgmma(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                           const int32_t* positions, const int32_t* tiles, int64_t num_tiles,
                                           const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                           float* out, cudaStream_t stream, int64_t cta_rows, int64_t key_tile) {
  if (num_tiles == 0) return cudaSuccess;
  if (cta_rows == 0) cta_rows = 64;
  if (key_tile == 0) key_tile = cta_rows == 64 ? 64 : 128;
  if (num_tiles < 0 || num_kv_heads <= 0 || num_kv_heads > 65535 || num_tiles > INT32_MAX / num_kv_heads ||
      num_heads % num_kv_heads != 0 || block_size <= 0 || max_blocks <= 0 || (key_tile != 64 && key_tile != 128) ||
      (cta_rows != 64 && cta_rows != 128) || (cta_rows == 64 && key_tile == 128) ||
      !prefill_attention_wgmma_supports(head_dim, num_heads / num_kv_heads) || !q || !k_cache || !v_cache ||
      !positions || !tiles || !block_tables || !out)
    return cudaErrorInvalidValue;
  if (reinterpret_cast<uintptr_t>(k_cache) % 16 != 0 || reinterpret_cast<uintptr_t>(v_cache) % 16 != 0)
    return cudaErrorInvalidValue;
  if (const cudaError_t arch = wgmma::require_sm90(); arch != cudaSuccess) return arch;
  if (cta_rows == 64)
    return launch_variant<1, 64>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks,
                                 block_size, num_heads, num_kv_heads, scale, out, stream);
  return key_tile == 64 ? launch_variant<2, 64>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables,
                                                max_blocks, block_size, num_heads, num_kv_heads, scale, out, stream)
                        : launch_variant<2, 128>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables,
                                                 max_blocks, block_size, num_heads, num_kv_heads, scale, out, stream);
}

}  // namespace troupe::kernels
