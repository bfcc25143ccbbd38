// Hopper MLA decode for head tiles of 33..64 heads (mla_decode.hpp), mla_decode_mma64.cu's work
// unit and partials on warpgroup MMA (sm_90a): one CTA of two warpgroups per (head tile, token,
// partition of the keys), the 64 heads as the M of every product (zero rows past the tile's heads).
// Roles (FlashMLA's split of the 512 latent columns between two warpgroups):
//   - warpgroup 0 owns S = Q K^T [64 heads x 64 keys] over the 576 dims (36 SS wgmma k16 steps,
//     Q and the tile in shared memory), the online softmax in registers, P to shared memory (bf16)
//     with the rows' corrections, then O[:, 0:256] += P V on an RS wgmma (P from its registers);
//   - warpgroup 1 copies the tiles (cp.async through the block table, two buffers: tile t + 2 is
//     issued once tile t's buffer is free) and computes O[:, 256:512] += P V on an SS wgmma (P from
//     shared memory), so its product of tile t runs beside warpgroup 0's S of tile t + 1.
// V is the latent part of the same shared tile, read N-major. Named barriers, each between the two
// warpgroups (one side arrives, the other waits), keep a single phase pending at a time:
//   TILE (tile t landed: warpgroup 1 -> 0), P_READY (P_t and its corrections written: 0 -> 1),
//   P_FREE (warpgroup 1's product of tile t done with P: 1 -> 0), BUF_FREE (warpgroup 0 done with
//   tile t's buffer: 0 -> 1, before tile t + 2 is copied into it).
// Shared memory (1,024-aligned): Q [9 blocks of 64 dims][64 rows], two tiles [9][64 keys], P [64 x
// 64], the rows' corrections, maxima and sums: 230,144 bytes + alignment slack, one CTA per SM.
// Every block is rows of 128 bytes in the 128-byte swizzle (wgmma.cuh). Precision as mla_decode_
// mma64.cu: q_abs and P rounded to bf16, every sum in fp32.
//
// Measured on an H200 (dsv3_mla_bench, R1 dims, block 64; bench/results/dsv3_mla_decode_h200_
// 2026-12-04_wgmma.json against _mma64.json from the same build): B 64 x ctx 4096 225 us against
// mla_decode_mma64.cu's 308 (0.41 of max(bytes / HBM bandwidth, FLOPs / bf16 rate) against 0.31),
// B 128 x 4096 439 against 593, B 64 x 1024 72 against 90. Next: warpgroup 0's S of tile t + 1
// issued before its own P V of tile t (FlashAttention-3's intra-warpgroup overlap), and the S
// product split between both warpgroups so neither waits on the other's softmax.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/flash_wgmma.cuh"
#include "kernels/mla_decode.hpp"
#include "kernels/mla_decode_tile.cuh"
#include "kernels/wgmma.cuh"

namespace troupe::kernels {
namespace {

using flash_wgmma::fast_exp2;
using flash_wgmma::pack_bf16x2;
using flash_wgmma::swizzled;

constexpr int kThreads = 256, kRows = 64, kKeys = 64;
constexpr int kEntry = 576, kChunks = kEntry / 8;  // 16-byte chunks of an entry (72)
constexpr int kBlock = 64 * 128;                                // one 64-dim block of 64 rows
constexpr int kDimBlocks = kEntry / 64;                         // 9
constexpr int kTile = kDimBlocks * kBlock;                      // a tile (or Q): 73,728 bytes
static_assert(kRows == int(kMlaHeadTile), "one CTA per head tile");

struct Smem {
  static constexpr int kQ = 0;
  static constexpr int kK = kQ + kTile;       // two tiles
  static constexpr int kP = kK + 2 * kTile;   // [64 rows][64 keys] bf16, one block
  static constexpr int kCorr = kP + kBlock;   // [64] fp32
  static constexpr int kMax = kCorr + kRows * 4;
  static constexpr int kSum = kMax + kRows * 4;
  static constexpr int kBytes = kSum + kRows * 4 + 1024;  // + slack for the alignment
};
static_assert(Smem::kBytes <= 227 * 1024, "more shared memory than one block may have");

enum Barrier : int { kTileReady = 1, kPReady = 2, kPFree = 3, kBufFree = 4, kQReady = 5 };

__global__ void __launch_bounds__(kThreads, 1)
    mla_decode_wgmma_kernel(const float* __restrict__ q_abs, const __nv_bfloat16* __restrict__ cache,
                            const int32_t* __restrict__ positions, const int32_t* __restrict__ seq_of_token,
                            const int32_t* __restrict__ tokens, const int32_t* __restrict__ block_tables,
                            int max_blocks, int block_size, int num_heads, float scale_log2, int partition_keys,
                            int min_keys, float* __restrict__ workspace, float* __restrict__ o_lat) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  allow_dependents();
  wait_for_prerequisites();
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (wgmma::smem_address(smem_raw) + 1023u) & ~1023u;
  uint8_t* const smem = smem_raw + (base - wgmma::smem_address(smem_raw));
  float* const corr_s = reinterpret_cast<float*>(smem + Smem::kCorr);
  float* const max_s = reinterpret_cast<float*>(smem + Smem::kMax);
  float* const sum_s = reinterpret_cast<float*>(smem + Smem::kSum);

  const mla_tile::Work w =
      mla_tile::work_of_cta(positions, seq_of_token, tokens, block_tables, max_blocks, num_heads, partition_keys,
                            min_keys);
  if (mla_tile::empty_partition(w, num_heads, workspace)) return;  // the whole CTA, before any barrier
  const int h0 = w.h0, i = w.i, heads = w.heads, begin = w.begin, end = w.end;
  const int32_t* table = w.table;
  const int num_tiles = begin < end ? (end - begin + kKeys - 1) / kKeys : 0;
  const int wg = int(threadIdx.x) / 128, tid = int(threadIdx.x) % 128;
  const int warp = tid / 32, lane = tid % 32, c = lane % 4;
  const int r0 = 16 * warp + lane / 4;  // this thread's rows r0 and r0 + 8 of every product
  auto tile_addr = [&](int tile) { return base + Smem::kK + (tile & 1) * kTile; };

  float o[128];  // O[:, 256 wg + 8 n + 2 c (+1)] of rows r0 (o[4n], o[4n+1]) and r0 + 8
#pragma unroll
  for (int n = 0; n < 128; ++n) o[n] = 0.0f;

  if (wg == 1) {
    // Copies tile `tile` (keys begin + 64 tile ...): thread tid takes key tid / 2, chunks tid % 2 + 2 k;
    // keys past the partition's end are zero-filled, never read (their table entries may be -1).
    const int key = tid / 2;
    auto load_tile = [&](int tile) {
      const int j = begin + tile * kKeys + key;
      const bool valid = j < end;
      const __nv_bfloat16* src = cache;
      if (valid) src += (int64_t(__ldg(table + j / block_size)) * block_size + j % block_size) * kEntry;
      const uint32_t dst = tile_addr(tile);
#pragma unroll
      for (int k = 0; k < kChunks / 2; ++k) {
        const int chunk = tid % 2 + 2 * k;
        wgmma::cp_async16(dst + (chunk / 8) * kBlock + swizzled(key, chunk % 8), src + chunk * 8, valid);
      }
      wgmma::cp_async_commit();
    };
    if (num_tiles > 0) {
      load_tile(0);
      if (num_tiles > 1) {
        load_tile(1);
        wgmma::cp_async_wait<1>();  // tile 0
      } else {
        wgmma::cp_async_wait<0>();
      }
      wgmma::fence_proxy_async();
      mma::named_barrier_arrive(kTileReady, kThreads);
    }
    for (int tile = 0; tile < num_tiles; ++tile) {
      mma::named_barrier(kPReady, kThreads);  // P_t and its corrections are in shared memory
      if (tile + 1 < num_tiles) {   // tile + 1 (copied since tile - 1) is the other warpgroup's next
        wgmma::cp_async_wait<0>();
        wgmma::fence_proxy_async();
        mma::named_barrier_arrive(kTileReady, kThreads);
      }
      const float corr0 = corr_s[r0], corr1 = corr_s[r0 + 8];
      wgmma::fence_operands(o);
      flash_wgmma::rescale_rows(o, corr0, corr1);
      const uint32_t v = tile_addr(tile) + 4 * kBlock;  // latent dims 256..511
      wgmma::fence();
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk)
        wgmma::wgmma_m64n256k16_bf16_ss_nmajor(o, wgmma::desc_kmajor_sw128(base + Smem::kP + kk * 32),
                                               wgmma::desc_nmajor_sw128(v + kk * 16 * 128, kBlock), 1);
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operands(o);
      if (tile + 2 < num_tiles) {
        mma::named_barrier(kBufFree, kThreads);  // warpgroup 0 is done with this buffer
        load_tile(tile + 2);
      }
      if (tile + 1 < num_tiles) mma::named_barrier_arrive(kPFree, kThreads);
    }
  } else {
    // Q of the tile's heads as bf16 (rows past `heads` zero), while the first tiles are in flight.
    mla_tile::stage_q<128, 6>(q_abs + (int64_t(i) * num_heads + h0) * kEntry, heads, tid,
                              [&](int r, int chunk, uint4 packed) {
                                *reinterpret_cast<uint4*>(smem + Smem::kQ + (chunk / 8) * kBlock +
                                                          swizzled(r, chunk % 8)) = packed;
                              });
    wgmma::fence_proxy_async();
    mma::named_barrier(kQReady, 128);
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // the rows' running max and sum

    for (int tile = 0; tile < num_tiles; ++tile) {
      mma::named_barrier(kTileReady, kThreads);
      const uint32_t k_base = tile_addr(tile);
      float s[32];
      wgmma::fence_operands(s);
      wgmma::fence();
#pragma unroll
      for (int ks = 0; ks < kDimBlocks * 4; ++ks)
        wgmma::wgmma_m64n64k16_bf16_ss(s, wgmma::desc_kmajor_sw128(base + Smem::kQ + (ks / 4) * kBlock + (ks % 4) * 32),
                                       wgmma::desc_kmajor_sw128(k_base + (ks / 4) * kBlock + (ks % 4) * 32),
                                       ks > 0 ? 1 : 0);
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operands(s);

      // Online softmax, log2 domain; keys past the partition's end masked.
      const int key0 = begin + tile * kKeys;
      float corr[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float& v = s[4 * n + 2 * half + e];
            v = key0 + 8 * n + 2 * c + e < end ? v * scale_log2 : -INFINITY;
            mx = fmaxf(mx, v);
          }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[half], mx);  // finite: key key0 is valid
        corr[half] = fast_exp2(m_run[half] - m_new);  // 0 on the first tile
        m_run[half] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float& v = s[4 * n + 2 * half + e];
            v = fast_exp2(v - m_new);
            sum += v;
          }
        l_run[half] = l_run[half] * corr[half] + sum;
      }
      if (tile > 0) mma::named_barrier(kPFree, kThreads);  // the other warpgroup's product of tile - 1 is done with P
#pragma unroll
      for (int n = 0; n < 8; ++n)
#pragma unroll
        for (int half = 0; half < 2; ++half)
          *reinterpret_cast<uint32_t*>(smem + Smem::kP + swizzled(r0 + 8 * half, n) + 4 * c) =
              pack_bf16x2(s[4 * n + 2 * half], s[4 * n + 2 * half + 1]);
      if (c == 0) {
        corr_s[r0] = corr[0];
        corr_s[r0 + 8] = corr[1];
      }
      wgmma::fence_proxy_async();
      mma::named_barrier_arrive(kPReady, kThreads);

      uint32_t p[kKeys / 16][4];  // P as the A fragments of the k16 steps
      flash_wgmma::pack_p<kKeys>(s, p);
      wgmma::fence_operands(o);
      flash_wgmma::rescale_rows(o, corr[0], corr[1]);
      wgmma::fence();
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk)
        wgmma::wgmma_m64n256k16_bf16_rs_nmajor(o, p[kk], wgmma::desc_nmajor_sw128(k_base + kk * 16 * 128, kBlock), 1);
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operands(o);
      if (tile + 2 < num_tiles) mma::named_barrier_arrive(kBufFree, kThreads);
    }
    // The rows' sums (the quad's partials) and maxima for both warpgroups.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float l = l_run[half];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      if (c == 0) {
        sum_s[r0 + 8 * half] = l;
        max_s[r0 + 8 * half] = m_run[half];
      }
    }
  }
  __syncthreads();

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = r0 + 8 * half;
    if (row >= heads) continue;
    const float sum = sum_s[row];
    float inv;
    float* dst = mla_tile::row_out(w, num_heads, row, sum, workspace, o_lat, &inv) + 256 * wg + 2 * c;
#pragma unroll
    for (int n = 0; n < 32; ++n)
      *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[4 * n + 2 * half] * inv, o[4 * n + 2 * half + 1] * inv);
    if (wg == 0 && c == 0) mla_tile::row_stats(w, num_heads, row, max_s[row], sum, workspace);
  }
#endif
}

}  // namespace

cudaError_t launch_mla_decode_wgmma(const float* q_abs, const uint16_t* cache, const int32_t* positions,
                                    const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                    const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                    int64_t num_heads, float scale, int64_t num_partitions, int64_t partition_keys,
                                    float* workspace, float* o_lat, cudaStream_t stream) {
  if (const cudaError_t arch = wgmma::require_sm90(); arch != cudaSuccess) return arch;
  return mla_tile::launch(mla_decode_wgmma_kernel, kThreads, Smem::kBytes, q_abs, cache, positions, seq_of_token,
                          tokens, num_tokens, block_tables, max_blocks, block_size, num_heads, scale, num_partitions,
                          partition_keys, workspace, o_lat, stream);
}

}  // namespace troupe::kernels
