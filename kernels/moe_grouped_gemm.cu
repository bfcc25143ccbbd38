// moe_grouped_gemm.hpp's kernel: a CTA per (128-column N tile, M tile of one expert) of kGroups
// warpgroups (1: 64-row tiles, two or three CTAs an SM; 2: 128-row tiles, one CTA an SM; 3: 192-row
// tiles, one CTA an SM, without the overlapped promotion: 3 x 128 threads leave 170 registers
// each), each the 64 rows [64 g, 64 g + 64) of the tile (a warpgroup whose rows are all past the tile's end
// multiplies the zero-filled rows anyway: a wgmma under a per-warpgroup branch is serialized, ptxas
// C7518). Per 128-wide K block: the A (x) and B (W) tiles, rows of 128 bytes, land in shared memory
// by cp.async in the 128-byte swizzle (16-byte chunk c of row r at chunk c ^ (r % 8); tiles
// 1024-byte aligned), 4 stages deep; four wgmma m64n128k32 e4m3 products sum the block into `part`,
// which is then promoted into `acc` with the row's x scale times the tile's W scale (one scale per
// CTA: the N tile is one 128-row W block).
#include <cuda_bf16.h>

#include <cstdlib>
#include <cstring>

#include "kernels/moe_grouped_gemm.hpp"
#include "kernels/wgmma.cuh"

namespace troupe::kernels {
namespace {

constexpr int kBN = 128, kBK = 128, kStages = 4;
constexpr int kBTileBytes = kBN * kBK;  // one stage's W tile: 16 KB of e4m3
// Shared memory of a CTA of `groups` warpgroups: per stage the A tile (64 rows a group) and the W
// tile, + slack to align to 1024.
constexpr int smem_bytes(int groups) { return kStages * (groups * 64 * kBK + kBTileBytes) + 1024; }

using wgmma::cp_async16;
using wgmma::cp_async_commit;
using wgmma::cp_async_wait;
using wgmma::fence_operands;
using wgmma::fence_proxy_async;

// d[64] (+)= A[64 x 32] . B[128 x 32]^T, e4m3 in, fp32 accumulate; accumulate = 0 overwrites d.
__device__ __forceinline__ void wgmma_m64n128k32(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

__device__ __forceinline__ void store_pair(uint16_t* out, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(out) = __floats2bfloat162_rn(a, b);
}
__device__ __forceinline__ void store_pair(float* out, float a, float b) { *reinterpret_cast<float2*>(out) = make_float2(a, b); }

// kOverlap (two `part` buffers; the W and x tiles then prefetched 2 blocks ahead instead of 3: a
// stage is free only once its products have finished):
//   kPaired: blocks in pairs, kb + 1's products issued before kb's are waited for, so they run
//     while kb is promoted; nothing is in flight at the pair's end. The default since stop 43.
//   kSerialized: every block's products run while the one before is promoted, a group in flight
//     across the loop's back edge, which ptxas cannot follow: it serializes every wgmma of the
//     kernel (C7514, "wgmma.mma_async instructions are serialized"), the default until stop 43
//     (then measured faster than no overlap: R1's MoE layer at 4,096 tokens 8.41 ms against 8.89;
//     TROUPE_MOE_GEMM_OVERLAP=serialized keeps it for A/B runs). kPaired compiles without C7514.
enum Overlap : int { kNoOverlap = 0, kPaired = 1, kSerialized = 2 };
template <int kGroups, typename OutT, int kOverlap>
__global__ void __launch_bounds__(kGroups * 128, kGroups == 1 ? 2 : 1)
    moe_grouped_gemm_kernel(const uint8_t* __restrict__ x, const float* __restrict__ x_scale,
                            const uint8_t* const* __restrict__ w_table, const float* const* __restrict__ ws_table,
                            const MoeGemmTile* __restrict__ tiles, OutT* __restrict__ out, int64_t n, int64_t k) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int kThreads = kGroups * 128, kATileBytes = kGroups * 64 * kBK, kStageBytes = kATileBytes + kBTileBytes;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem_base = (uint32_t(__cvta_generic_to_shared(smem_raw)) + 1023u) & ~1023u;
  const MoeGemmTile tile = tiles[blockIdx.y];
  const int64_t n0 = int64_t(blockIdx.x) * kBN;
  const uint8_t* w = w_table[tile.expert];
  const float* ws = ws_table[tile.expert];
  const int tid = int(threadIdx.x), g = tid / 128, lane = tid % 32, warp_in_g = (tid % 128) / 32;
  const int64_t num_kb = k / kBK;

  // Copies, addresses hoisted out of the K loop: thread tid copies chunk tid % 8 of rows tid / 8 +
  // kRowStep i of both tiles (every such row has the same row % 8, so the swizzled destination
  // moves by a constant per i); rows past the tile's (or n's) end are zero-filled, not read. With
  // three groups (48 rows a step) the W tile's 128 rows take two whole steps and a part of a third.
  constexpr int kRowStep = kThreads / 8, kBSteps = (kBN + kRowStep - 1) / kRowStep;
  static_assert(kRowStep % 8 == 0 && (kGroups * 64) % kRowStep == 0, "whole A steps, one swizzle phase");
  const int row_first = tid / 8, chunk = tid % 8;
  const uint32_t dst_first = uint32_t(row_first * 128 + ((chunk ^ (row_first & 7)) * 16));
  const uint8_t* const a_src = x + (int64_t(tile.row_begin) + row_first) * k + chunk * 16;
  const uint8_t* const b_src = w + (n0 + row_first) * k + chunk * 16;
  const int64_t src_step = int64_t(kRowStep) * k;
  auto load_stage = [&](int stage, int64_t kb) {
    const uint32_t a_base = smem_base + uint32_t(stage * kStageBytes) + dst_first, b_base = a_base + kATileBytes;
#pragma unroll
    for (int i = 0; i < kATileBytes / 16 / kThreads; ++i)
      cp_async16(a_base + i * kRowStep * 128, a_src + kb * kBK + i * src_step, row_first + i * kRowStep < tile.rows);
#pragma unroll
    for (int i = 0; i < kBSteps; ++i)  // a last N tile past n: zero rows, columns not stored
      if (kBN % kRowStep == 0 || row_first + i * kRowStep < kBN)
        cp_async16(b_base + i * kRowStep * 128, b_src + kb * kBK + i * src_step, n0 + row_first + i * kRowStep < n);
  };

  float acc[64], part[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.0f;
  // This thread's two rows of the tile (the wgmma accumulator layout) and their scales' base.
  const int r0 = g * 64 + warp_in_g * 16 + lane / 4, r1 = r0 + 8;
  const bool v0 = r0 < tile.rows, v1 = r1 < tile.rows;
  const float* s0 = x_scale + num_kb * int64_t(tile.seg_first) + (int64_t(tile.row_begin) + r0 - tile.seg_first);
  const float* s1 = s0 + 8;
  const float* w_scale_row = ws + (n0 / kBN) * num_kb;

  // Block kb's four products into d (d overwritten), committed as one group.
  auto issue = [&](int64_t kb, float(&d)[64]) {
    const uint32_t a_base = smem_base + uint32_t((kb % kStages) * kStageBytes) + uint32_t(g * 64 * 128);
    const uint32_t b_base = smem_base + uint32_t((kb % kStages) * kStageBytes) + kATileBytes;
    fence_operands(d);
    wgmma::fence();
#pragma unroll
    for (int j = 0; j < kBK / 32; ++j)
      wgmma_m64n128k32(d, wgmma::desc_kmajor_sw128(a_base + 32 * j), wgmma::desc_kmajor_sw128(b_base + 32 * j), j > 0 ? 1 : 0);
    wgmma::commit();
  };
  // Block kb's scales of this thread's two rows: x scale x the tile's W scale. Loaded when block kb
  // is issued and used when it is promoted, an iteration later: the fences and waits between
  // (memory clobbers) kept every load after the wgmma wait before its promotion, where its L2
  // round trip (a new line each block: the x scales are [K block, row]) stalled the warpgroup
  // with the tensor cores idle.
  auto scales = [&](int64_t kb) {
    const float sb = __ldg(w_scale_row + kb);
    return make_float2(v0 ? __ldg(s0 + kb * tile.seg_count) * sb : 0.0f, v1 ? __ldg(s1 + kb * tile.seg_count) * sb : 0.0f);
  };
  // acc += block kb's sums (finished) x its scales.
  auto promote = [&](float(&d)[64], float2 sc) {
    fence_operands(d);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      acc[4 * j + 0] = fmaf(d[4 * j + 0], sc.x, acc[4 * j + 0]);
      acc[4 * j + 1] = fmaf(d[4 * j + 1], sc.x, acc[4 * j + 1]);
      acc[4 * j + 2] = fmaf(d[4 * j + 2], sc.y, acc[4 * j + 2]);
      acc[4 * j + 3] = fmaf(d[4 * j + 3], sc.y, acc[4 * j + 3]);
    }
  };
  constexpr int kAhead = kOverlap ? kStages - 2 : kStages - 1;  // blocks in flight before the first
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < num_kb) load_stage(s, s);
    cp_async_commit();
  }
  // Waits for block kb's tiles and starts loading block kb + kAhead (into the stage whose products
  // have finished everywhere: the barrier).
  auto next_block = [&](int64_t kb) {
    cp_async_wait<kAhead - 1>();
    fence_proxy_async();
    __syncthreads();
    const int64_t next = kb + kAhead;
    if (next < num_kb) load_stage(int(next % kStages), next);
    cp_async_commit();
  };
  if constexpr (kOverlap == kNoOverlap) {
    for (int64_t kb = 0; kb < num_kb; ++kb) {
      next_block(kb);
      const float2 sc = scales(kb);  // in flight while the products run
      issue(kb, part);
      wgmma::wait<0>();
      promote(part, sc);
    }
  } else if constexpr (kOverlap == kPaired) {
    // A pair's second block runs while its first is promoted; a stage is refilled two blocks
    // later, by when every warpgroup has waited for its products (the pair's wait<0>, then the
    // barrier in next_block). num_kb is even (the launcher's condition).
    float part2[64];
    for (int64_t kb = 0; kb < num_kb; kb += 2) {
      next_block(kb);
      const float2 sc0 = scales(kb);
      issue(kb, part);
      next_block(kb + 1);
      const float2 sc1 = scales(kb + 1);
      issue(kb + 1, part2);
      wgmma::wait<1>();
      promote(part, sc0);
      wgmma::wait<0>();
      promote(part2, sc1);
    }
  } else {
    // Block kb into one buffer while block kb - 1, in the other, is waited for and promoted. num_kb
    // is even (the launcher's condition), so the loop needs no branch around a wgmma.
    float part2[64];
    next_block(0);
    float2 sc_part = scales(0), sc_part2;  // the scales of the block each buffer holds
    issue(0, part);
    int64_t kb = 1;
    for (; kb < num_kb - 1; kb += 2) {
      next_block(kb);
      issue(kb, part2);
      sc_part2 = scales(kb);
      wgmma::wait<1>();
      promote(part, sc_part);
      next_block(kb + 1);
      issue(kb + 1, part);
      sc_part = scales(kb + 1);
      wgmma::wait<1>();
      promote(part2, sc_part2);
    }
    next_block(kb);
    issue(kb, part2);
    sc_part2 = scales(kb);
    wgmma::wait<1>();
    promote(part, sc_part);
    wgmma::wait<0>();
    promote(part2, sc_part2);
  }
  cp_async_wait<0>();
  OutT* o0 = out + (int64_t(tile.row_begin) + r0) * n + n0;
  OutT* o1 = out + (int64_t(tile.row_begin) + r1) * n + n0;
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const int col = 8 * j + 2 * (lane % 4);
    if (n0 + col >= n) continue;
    if (v0) store_pair(o0 + col, acc[4 * j + 0], acc[4 * j + 1]);
    if (v1) store_pair(o1 + col, acc[4 * j + 2], acc[4 * j + 3]);
  }
#endif
}

template <int kGroups, typename OutT, int kOverlap>
cudaError_t launch_groups(const uint8_t* x_fp8, const float* x_scale, const uint8_t* const* w_table,
                          const float* const* w_scale_table, const MoeGemmTile* tiles, int32_t num_tiles,
                          OutT* out, int64_t n, int64_t k, cudaStream_t stream) {
  // Set at each launch: the attribute belongs to the current device (a process may drive several).
  if (const cudaError_t attr = cudaFuncSetAttribute(moe_grouped_gemm_kernel<kGroups, OutT, kOverlap>,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes(kGroups));
      attr != cudaSuccess)
    return attr;
  const dim3 grid(unsigned((n + kBN - 1) / kBN), unsigned(num_tiles));
  moe_grouped_gemm_kernel<kGroups, OutT, kOverlap><<<grid, kGroups * 128, smem_bytes(kGroups), stream>>>(
      x_fp8, x_scale, w_table, w_scale_table, tiles, out, n, k);
  return cudaGetLastError();
}

// launch_groups with the Overlap `mode` chosen at run time.
template <int kGroups, typename OutT>
cudaError_t launch_mode(int mode, const uint8_t* x_fp8, const float* x_scale, const uint8_t* const* w_table,
                        const float* const* w_scale_table, const MoeGemmTile* tiles, int32_t num_tiles, OutT* out,
                        int64_t n, int64_t k, cudaStream_t stream) {
  auto* const chosen = mode == kPaired       ? launch_groups<kGroups, OutT, kPaired>
                       : mode == kSerialized ? launch_groups<kGroups, OutT, kSerialized>
                                             : launch_groups<kGroups, OutT, kNoOverlap>;
  return chosen(x_fp8, x_scale, w_table, w_scale_table, tiles, num_tiles, out, n, k, stream);
}

template <typename OutT>
cudaError_t launch(const uint8_t* x_fp8, const float* x_scale, const uint8_t* const* w_table,
                   const float* const* w_scale_table, const MoeGemmTile* tiles, int32_t num_tiles, int64_t tile_rows,
                   bool overlap, OutT* out, int64_t n, int64_t k, cudaStream_t stream) {
  if (!moe_grouped_gemm_supported(n, k) || num_tiles < 0 || num_tiles > 65535 || (n + kBN - 1) / kBN > INT32_MAX ||
      (tile_rows != 64 && tile_rows != 128 && tile_rows != 192))
    return cudaErrorInvalidValue;
  if (num_tiles == 0) return cudaSuccess;
  if (const cudaError_t arch = wgmma::require_sm90(); arch != cudaSuccess) return arch;
  // TROUPE_MOE_GEMM_OVERLAP=serialized: the overlap before stop 43 (kSerialized's comment), read at
  // each call.
  const char* env = std::getenv("TROUPE_MOE_GEMM_OVERLAP");
  const int mode = !overlap || (k / kBK) % 2 != 0                ? kNoOverlap
                   : env && std::strcmp(env, "serialized") == 0 ? kSerialized
                                                                 : kPaired;
  if (tile_rows == 192)  // never overlapped: two partial sums would not fit 170 registers
    return launch_groups<3, OutT, kNoOverlap>(x_fp8, x_scale, w_table, w_scale_table, tiles, num_tiles, out, n, k,
                                              stream);
  return tile_rows == 128
             ? launch_mode<2, OutT>(mode, x_fp8, x_scale, w_table, w_scale_table, tiles, num_tiles, out, n, k, stream)
             : launch_mode<1, OutT>(mode, x_fp8, x_scale, w_table, w_scale_table, tiles, num_tiles, out, n, k, stream);
}

}  // namespace

cudaError_t launch_moe_grouped_gemm(const uint8_t* x_fp8, const float* x_scale, const uint8_t* const* w_table,
                                    const float* const* w_scale_table, const MoeGemmTile* tiles, int32_t num_tiles,
                                    int64_t tile_rows, uint16_t* out, int64_t n, int64_t k, cudaStream_t stream,
                                    bool overlap) {
  return launch(x_fp8, x_scale, w_table, w_scale_table, tiles, num_tiles, tile_rows, overlap, out, n, k, stream);
}

cudaError_t launch_moe_grouped_gemm(const uint8_t* x_fp8, const float* x_scale, const uint8_t* const* w_table,
                                    const float* const* w_scale_table, const MoeGemmTile* tiles, int32_t num_tiles,
                                    int64_t tile_rows, float* out, int64_t n, int64_t k, cudaStream_t stream,
                                    bool overlap) {
  return launch(x_fp8, x_scale, w_table, w_scale_table, tiles, num_tiles, tile_rows, overlap, out, n, k, stream);
}

}  // namespace troupe::kernels
