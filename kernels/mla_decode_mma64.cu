// Tensor-core MLA decode for head tiles of 33..64 heads (mla_decode.hpp): DeepSeek-V3/R1's 128
// heads run as two such tiles per token, whose CTAs are launched side by side (grid x), so the
// second reads each latent row from L2. bf16 latent cache at kv_lora 512, rope 64.
//
// Work unit: one CTA (8 warps) per (head tile, token, partition of the keys); partitions are merged
// by mla_decode.cu's combine kernel from their (max, sum, o) partials. Per tile of kKeys = 64 keys:
//   1. cp.async copies the 64 cache entries [latent 512 | k_pe 64] (bf16) through the block table
//      into one of two shared buffers (tile t + 1 is in flight while tile t computes); keys past the
//      partition's end are zero-filled, never read (their table entries may be -1).
//   2. S = Q K^T [64 heads, 64 keys] over 576 dims on mma.sync m16n8k16 (bf16 in, fp32 sums). Warp
//      w computes a 32 x 32 block (row half w & 1, key half (w >> 1) & 1) over one half of the dims
//      (w >> 2): per k16 step 4 ldmatrix feed 8 mma (the 16 x 32 warp tiles of mla_decode_mma.cu's
//      kM = 4 path fed 6 per 8; shared-memory bandwidth bounds this phase).
//   3. The two warps of a block (w, w ^ 4) add their partial sums through the P buffer in two rounds
//      (named barriers of 64 threads); each then owns 16 of the block's 32 keys.
//   4. Online softmax in fp32, log2 domain: the four warps of a row half exchange row maxima through
//      shared memory, take p = exp2(s - m), keep partial row sums, write P as bf16 and the rows'
//      correction factors.
//   5. O [64, 512] = corr * O + P V, V = the latent part of the same shared tile: warp w owns columns
//      [64 w, 64 w + 64) of all 64 rows, 128 fp32 accumulators per thread.
// Barriers per tile: tile landed (and everyone done with tile t - 1), three pair barriers, maxima
// exchanged, P written.
//
// Shared memory: Q 73,728 + 2 K tiles 147,456 + P 8,192 + statistics 2,560 = 231,936 bytes (one CTA
// per SM); 230 registers, no spills (sm_90a). Precision as mla_decode_mma.cu: q_abs and P rounded
// to bf16, every sum in fp32 (op-table NMSE 5e-7..7e-6 against the fp32 reference).
//
// Measured on an H200 (dsv3_mla_bench, R1 dims, block 64, bench/results/dsv3_mla_decode_h200_
// 2026-12-03.json): B 64 x ctx 4096 297-308 us (mla_decode_mma.cu's kM = 4 path: 355 us), ~245
// TFLOP/s, 0.30 of max(bytes / HBM bandwidth, FLOPs / cuBLAS's bf16 rate 786 TFLOP/s); B 128 x 4096
// 582-589 us. Nsight Compute at B 64 x 4096: tensor pipe 39% busy, issue slots 34%, 5.7 cycles
// between a warp's instructions (2 warps per scheduler), a third of them fixed-latency dependencies:
// latency-bound at 8 warps per SM, not bandwidth-bound. Next: wgmma with S of tile t + 1 issued while
// P V of tile t runs (FlashMLA's two warp groups), which mma.sync's register-held operands rule out.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/mla_decode.hpp"
#include "kernels/mla_decode_tile.cuh"
#include "kernels/mma_sync.cuh"

namespace troupe::kernels {
namespace {

using namespace mma;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 64;                        // heads per CTA (padded with zero rows)
constexpr int kLora = 512, kRope = 64, kEntry = kLora + kRope;
constexpr int kKeys = 64;                        // keys per tile
constexpr int kChunks = kEntry / 8;              // 16-byte chunks per entry (72)
constexpr int kHalfChunks = kChunks / 2;         // chunks per half of the dims (36)
constexpr int kRowBytes = kEntry * 2;            // a Q row or cache entry in shared memory
constexpr int kPRowBytes = kKeys * 2;            // a P row
constexpr int kColsPerWarp = kLora / kWarps;     // O columns per warp (64)
constexpr int kPairBytes = 2 * 2 * 32 * 16;      // one warp pair's exchange: 2 warps x 2 float4 x 32 lanes
static_assert(kRows == int(kMlaHeadTile), "one CTA per head tile");
static_assert(kHalfChunks % 2 == 0 && kColsPerWarp == 64 && kKeys == 64, "the phases below assume these");

struct Smem {
  static constexpr int kQ = 0;                               // [64][576] bf16, swizzled
  static constexpr int kK = kQ + kRows * kRowBytes;          // 2 x [64][576] bf16, swizzled
  static constexpr int kKBuffer = kKeys * kRowBytes;
  static constexpr int kP = kK + 2 * kKBuffer;               // [64][64] bf16; first the S exchange
  static constexpr int kRedMax = kP + kRows * kPRowBytes;    // [8 warps][32 rows] fp32
  static constexpr int kRedSum = kRedMax + kWarps * 32 * 4;  // [8 warps][32 rows] fp32
  static constexpr int kCorr = kRedSum + kWarps * 32 * 4;    // [64] fp32 corrections
  static constexpr int kMax = kCorr + kRows * 4;             // [64] fp32 final maxima
  static constexpr int kBytes = kMax + kRows * 4;
};
static_assert(Smem::kBytes <= 227 * 1024, "more shared memory than one block may have");
static_assert(4 * kPairBytes == kRows * kPRowBytes, "the four pairs' exchange fills the P buffer");

__global__ void __launch_bounds__(kThreads, 1)
    mla_decode_mma64_kernel(const float* __restrict__ q_abs, const __nv_bfloat16* __restrict__ cache,
                            const int32_t* __restrict__ positions, const int32_t* __restrict__ seq_of_token,
                            const int32_t* __restrict__ tokens, const int32_t* __restrict__ block_tables,
                            int max_blocks, int block_size, int num_heads, float scale_log2, int partition_keys,
                            int min_keys, float* __restrict__ workspace, float* __restrict__ o_lat) {
  allow_dependents();
  wait_for_prerequisites();
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t base_addr = smem_address(smem);
  const uint32_t q_addr = base_addr + Smem::kQ, k_addr = base_addr + Smem::kK, p_addr = base_addr + Smem::kP;
  float* red_max = reinterpret_cast<float*>(smem + Smem::kRedMax);
  float* red_sum = reinterpret_cast<float*>(smem + Smem::kRedSum);
  float* corr_s = reinterpret_cast<float*>(smem + Smem::kCorr);
  float* max_s = reinterpret_cast<float*>(smem + Smem::kMax);

  const mla_tile::Work w =
      mla_tile::work_of_cta(positions, seq_of_token, tokens, block_tables, max_blocks, num_heads, partition_keys,
                            min_keys);
  if (mla_tile::empty_partition(w, num_heads, workspace)) return;  // the whole CTA, before any barrier
  const int h0 = w.h0, i = w.i, heads = w.heads, begin = w.begin, end = w.end;
  const int32_t* table = w.table;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;

  // Copies keys [base, base + 64) into buffer `buf`: thread t copies chunks t % 4 + 4 k of key t / 4,
  // from cache block `block` (block_of(base), read a tile ahead: the table's latency stays off the
  // path from the tile barrier to the S phase).
  const int load_key = threadIdx.x / 4;
  auto block_of = [&](int base) {
    const int j = base + load_key;
    return j < end ? __ldg(table + j / block_size) : 0;
  };
  auto load_tile = [&](int base, int buf, int32_t block) {
    const int key = load_key, j = base + key;
    const bool valid = j < end;
    const __nv_bfloat16* src = cache;
    if (valid) src += (int64_t(block) * block_size + j % block_size) * kEntry;
    const uint32_t dst = k_addr + buf * Smem::kKBuffer;
#pragma unroll
    for (int k = 0; k < kChunks / 4; ++k) {
      const int chunk = threadIdx.x % 4 + 4 * k;
      cp_async16(dst + swizzled(key, kRowBytes, chunk), valid ? src + chunk * 8 : src, valid ? 16 : 0);
    }
    cp_async_commit();
  };
  int32_t next_block = 0;  // block_of(the next tile)
  if (begin < end) {
    load_tile(begin, 0, block_of(begin));
    next_block = block_of(begin + kKeys);
  }

  // Q of the tile's heads as bf16 (rows past `heads` zero), while the first tile is in flight: 18
  // float4 pairs per thread, issued 6 at a time, so a CTA waits for 3 rounds of loads, not 18 (the
  // whole of a B 1 launch's CTA otherwise, whose partition is one or two tiles).
  mla_tile::stage_q<kThreads, 6>(q_abs + (int64_t(i) * num_heads + h0) * kEntry, heads, int(threadIdx.x),
                                 [&](int r, int chunk, uint4 packed) {
                                   *reinterpret_cast<uint4*>(smem + Smem::kQ + swizzled(r, kRowBytes, chunk)) = packed;
                                 });

  // Warp roles. S: rows [32 mh, + 32) (m tiles mt = 0, 1), keys [32 kh, + 32) (n tiles 0..3), dims
  // chunks [36 dh, + 36). After the exchange: the same rows, keys [32 kh + 16 dh, + 16).
  const int mh = warp & 1, kh = (warp >> 1) & 1, dh = warp >> 2;
  const int pair_barrier = 1 + (warp & 3);
  float4* exchange = reinterpret_cast<float4*>(smem + Smem::kP + (warp & 3) * kPairBytes);
  const int own_key0 = 32 * kh + 16 * dh;  // first owned key of the tile
  float m_run[2][2], l_part[2][2];         // [mt][row g / g + 8]
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_part[mt][0] = l_part[mt][1] = 0.0f;
  }
  float o[4][8][4];  // PV: rows of m tile mm, columns 64 warp + 8 n + 2c (+1)
#pragma unroll
  for (int mm = 0; mm < 4; ++mm)
#pragma unroll
    for (int n = 0; n < 8; ++n) o[mm][n][0] = o[mm][n][1] = o[mm][n][2] = o[mm][n][3] = 0.0f;

  int buf = 0;
  for (int base = begin; base < end; base += kKeys, buf ^= 1) {
    cp_async_wait_all();  // this thread's copies of tile `base`
    __syncthreads();      // everyone's copies (and Q) visible; everyone done with the previous tile
    if (base + kKeys < end) {
      load_tile(base + kKeys, buf ^ 1, next_block);
      next_block = block_of(base + 2 * kKeys);
    }
    const uint32_t tile = k_addr + buf * Smem::kKBuffer;

    // 2. Partial S over this warp's half of the dims: 18 k16 steps.
    float s[2][4][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int n = 0; n < 4; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll 2
    for (int d = 0; d < kHalfChunks / 2; ++d) {
      const int chunk = kHalfChunks * dh + 2 * d;
      uint32_t a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
        ldmatrix_x4(a[mt], q_addr + swizzled(32 * mh + 16 * mt + lane % 16, kRowBytes, chunk + lane / 16));
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        // Matrices: keys +0..7 dims chunk, chunk + 1; keys +8..15 the same (b0, b1 of n tiles 2np, 2np + 1).
        uint32_t kf[4];
        ldmatrix_x4(kf, tile + swizzled(32 * kh + 16 * np + 8 * (lane / 16) + lane % 8, kRowBytes,
                                        chunk + (lane / 8) % 2));
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma_bf16(s[mt][2 * np], a[mt], kf[0], kf[1]);
          mma_bf16(s[mt][2 * np + 1], a[mt], kf[2], kf[3]);
        }
      }
    }

    // 3. Pair exchange: warp dh gives the n tiles it does not own (dh = 0 owns 0, 1; dh = 1 owns 2, 3).
    float p[2][2][4];  // owned scores [mt][ntl]: keys own_key0 + 8 ntl + 2c (+1)
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      if (mt == 1) named_barrier(pair_barrier, 64);  // the partner has read round 0
#pragma unroll
      for (int ntl = 0; ntl < 2; ++ntl) {
        // Selects of values, not of array addresses: s stays in registers.
        const float4 lo = make_float4(s[mt][ntl][0], s[mt][ntl][1], s[mt][ntl][2], s[mt][ntl][3]);
        const float4 hi = make_float4(s[mt][2 + ntl][0], s[mt][2 + ntl][1], s[mt][2 + ntl][2], s[mt][2 + ntl][3]);
        exchange[(dh * 2 + ntl) * 32 + lane] = dh == 0 ? hi : lo;
      }
      named_barrier(pair_barrier, 64);
#pragma unroll
      for (int ntl = 0; ntl < 2; ++ntl) {
        const float4 v = exchange[((1 - dh) * 2 + ntl) * 32 + lane];
#pragma unroll
        for (int e = 0; e < 4; ++e) p[mt][ntl][e] = dh == 0 ? s[mt][ntl][e] : s[mt][2 + ntl][e];
        p[mt][ntl][0] += v.x;
        p[mt][ntl][1] += v.y;
        p[mt][ntl][2] += v.z;
        p[mt][ntl][3] += v.w;
      }
    }

    // 4. Log2-domain scores, keys past the end masked; row maxima over the row half's four warps.
    float mx[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}};
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int ntl = 0; ntl < 2; ++ntl)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = base + own_key0 + 8 * ntl + 2 * c + (e & 1);
          p[mt][ntl][e] = key < end ? p[mt][ntl][e] * scale_log2 : -INFINITY;
          mx[mt][e / 2] = fmaxf(mx[mt][e / 2], p[mt][ntl][e]);
        }
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        mx[mt][h] = fmaxf(mx[mt][h], __shfl_xor_sync(0xffffffffu, mx[mt][h], 1));
        mx[mt][h] = fmaxf(mx[mt][h], __shfl_xor_sync(0xffffffffu, mx[mt][h], 2));
        if (c == 0) red_max[warp * 32 + 16 * mt + g + 8 * h] = mx[mt][h];
      }
    __syncthreads();
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int local_row = 16 * mt + g + 8 * h;
        float tile_max = -INFINITY;
#pragma unroll
        for (int k = 0; k < 4; ++k) tile_max = fmaxf(tile_max, red_max[(mh + 2 * (k & 1) + 4 * (k >> 1)) * 32 + local_row]);
        const float m_new = fmaxf(m_run[mt][h], tile_max);  // finite: key `base` is valid
        const float corr = exp2f(m_run[mt][h] - m_new);     // 0 on the first tile
        m_run[mt][h] = m_new;
        l_part[mt][h] *= corr;
        if (kh == 0 && dh == 0 && c == 0) corr_s[32 * mh + local_row] = corr;
      }
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int ntl = 0; ntl < 2; ++ntl) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          p[mt][ntl][e] = exp2f(p[mt][ntl][e] - m_run[mt][e / 2]);  // 0 past the end
          l_part[mt][e / 2] += p[mt][ntl][e];
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = 32 * mh + 16 * mt + g + 8 * h, key = own_key0 + 8 * ntl + 2 * c;
          *reinterpret_cast<uint32_t*>(smem + Smem::kP + swizzled(row, kPRowBytes, key / 8) + (key % 8) * 2) =
              pack_bf16x2(p[mt][ntl][2 * h], p[mt][ntl][2 * h + 1]);
        }
      }
    __syncthreads();

    // 5. O = corr * O + P V over 4 steps of 16 keys; V columns [64 warp, + 64) of the same tile.
#pragma unroll
    for (int mm = 0; mm < 4; ++mm) {
      const float c0 = corr_s[16 * mm + g], c1 = corr_s[16 * mm + g + 8];
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        o[mm][n][0] *= c0;
        o[mm][n][1] *= c0;
        o[mm][n][2] *= c1;
        o[mm][n][3] *= c1;
      }
    }
    const int v_key = lane % 8 + 8 * ((lane / 8) % 2);
#pragma unroll 1
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t pf[4][4];
#pragma unroll
      for (int mm = 0; mm < 4; ++mm)
        ldmatrix_x4(pf[mm], p_addr + swizzled(16 * mm + lane % 16, kPRowBytes, 2 * kk + lane / 16));
#pragma unroll
      for (int j = 0; j < kColsPerWarp / 16; ++j) {
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, tile + swizzled(16 * kk + v_key, kRowBytes, warp * (kColsPerWarp / 8) + 2 * j + lane / 16));
#pragma unroll
        for (int mm = 0; mm < 4; ++mm) {
          mma_bf16(o[mm][2 * j], pf[mm], vf[0], vf[1]);
          mma_bf16(o[mm][2 * j + 1], pf[mm], vf[2], vf[3]);
        }
      }
    }
  }

  // Row sums: the quad's partials, then the row half's four warps (through shared memory).
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l_part[mt][h] += __shfl_xor_sync(0xffffffffu, l_part[mt][h], 1);
      l_part[mt][h] += __shfl_xor_sync(0xffffffffu, l_part[mt][h], 2);
    }
  __syncthreads();  // the last tile's readers of the statistics are done
  if (c == 0) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int local_row = 16 * mt + g + 8 * h;
        red_sum[warp * 32 + local_row] = l_part[mt][h];
        if (kh == 0 && dh == 0) max_s[32 * mh + local_row] = m_run[mt][h];
      }
  }
  __syncthreads();
#pragma unroll
  for (int mm = 0; mm < 4; ++mm) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = 16 * mm + g + 8 * r;
      if (row >= heads) continue;
      const int row_half = row / 32, local_row = row % 32;
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < 4; ++k) sum += red_sum[(row_half + 2 * (k & 1) + 4 * (k >> 1)) * 32 + local_row];
      float inv;
      float* dst = mla_tile::row_out(w, num_heads, row, sum, workspace, o_lat, &inv) + warp * kColsPerWarp + 2 * c;
#pragma unroll
      for (int n = 0; n < 8; ++n)
        *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[mm][n][2 * r] * inv, o[mm][n][2 * r + 1] * inv);
      if (warp == 0 && c == 0) mla_tile::row_stats(w, num_heads, row, max_s[row], sum, workspace);
    }
  }
}

}  // namespace

cudaError_t launch_mla_decode_mma64(const float* q_abs, const uint16_t* cache, const int32_t* positions,
                                    const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                    const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                    int64_t num_heads, float scale, int64_t num_partitions, int64_t partition_keys,
                                    float* workspace, float* o_lat, cudaStream_t stream) {
  return mla_tile::launch(mla_decode_mma64_kernel, kThreads, Smem::kBytes, q_abs, cache, positions, seq_of_token,
                          tokens, num_tokens, block_tables, max_blocks, block_size, num_heads, scale, num_partitions,
                          partition_keys, workspace, o_lat, stream);
}

}  // namespace troupe::kernels
