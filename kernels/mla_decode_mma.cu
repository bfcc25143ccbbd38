// Tensor-core MLA decode (mla_decode.hpp): the absorbed attention of one token's head tile over a
// partition of its keys, for a bf16 latent cache at kv_lora 512, rope 64 (DeepSeek-V2/V3/R1).
//
// Work unit: one CTA (8 warps) per (head tile of up to 64 heads, token, partition), as the SIMT
// kernel (mla_decode.cu), whose combine kernel merges the partitions' (max, sum, o) partials.
// kM = 1 or 2 m16 row tiles (heads <= 16, <= 32; rows past the tile's heads are zero). Tiles of 33..64
// heads (R1's 128 heads: two per token, unless mla_decode_head_tile gives this kernel 16-head
// tiles at small batches) run mla_decode_mma64.cu's kernel instead, whose warps split
// S into 32 x 32 blocks over half the dims each (the kM = 4 instance of this one fed 6 ldmatrix per 8
// mma there, and reached 0.22 of HBM bandwidth at B 64 x ctx 4096 on an H200).
// Per tile of kKeys = 64 keys:
//   1. cp.async copies the 64 cache entries [latent 512 | k_pe 64] (bf16) into one of two shared
//      buffers (tile t + 1 is in flight while tile t computes); keys past the partition's end are
//      zero-filled (never read: their table entries may be -1, their slots NaN).
//   2. S = Q K^T [16 kM heads, 64 keys] on mma.sync m16n8k16 (bf16 in, fp32 accumulate). Warp w
//      computes row tile w % kM against keys [w / kM * 8 kM, + 8 kM) over all 576 dims; Q (rounded
//      to bf16 once, in shared memory) and K come by ldmatrix.
//   3. Online softmax in fp32, log2 domain: the warps of a row tile exchange their row maxima
//      through shared memory, then each takes p = exp2(s - m), keeps its partial row sums, writes P
//      as bf16 to shared memory and (key group 0) the rows' correction factors.
//   4. O [16 kM, 512] += P V with V = the latent part of the same shared tile (read from HBM once):
//      warp w owns columns [64 w, 64 w + 64) of every row, 32 kM fp32 accumulators per thread.
// Barriers per tile: tile landed (also: everyone done with tile t - 1), maxima exchanged, P written.
//
// Resources (sm_90a, ptxas -v): 184 / 127 registers at kM = 2 / 1, no spills; shared memory
// 189,696 / 169,088 bytes (one CTA per SM).
//
// Precision: q_abs and P are rounded to bf16 (relative 2^-9 each; the cache is bf16 already), all
// sums fp32: o_lat differs from the fp32 reference by ~1e-3..1e-2 of its magnitude (NMSE ~1e-5).
//
// Fragments of mma.sync.m16n8k16.row.col (PTX ISA "Matrix Fragments for mma.m16n8k16"), g = lane / 4,
// c = lane % 4: A 16x16: a0 = (row g, cols 2c, 2c+1), a1 = (g + 8, 2c..), a2 = (g, 2c + 8..),
// a3 = (g + 8, 2c + 8..). B 16x8 (k x n): b0 = (k 2c, 2c+1; n g), b1 = (k 2c + 8..; n g).
// C 16x8 fp32: c0, c1 = (row g, cols 2c, 2c+1), c2, c3 = (row g + 8, same cols).
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; register i gets (row lane / 4,
// cols 2 (lane % 4)..+1) of it, or with .trans (rows 2 (lane % 4)..+1, col lane / 4). So
//   A (Q, P: [row][k] row-major): lane l addresses row l % 16, k chunk l / 16;
//   B = K^T (K stored [key][dim]: k-contiguous per n): lane l addresses key l % 8, dim chunk l / 8
//       (one x4 = 8 keys x 32 dims = b0, b1 of two k16 steps);
//   B = V (stored [key][col]: n-contiguous, .trans): lane l addresses key l % 8 + 8 ((l / 8) % 2),
//       col chunk l / 16 (one x4 = 16 keys x 16 cols = b0, b1 of two n8 tiles).
// Shared rows are stored in 16-byte chunks swizzled as chunk ^ (row % 8), so the 8 rows an
// ldmatrix phase reads (same logical chunk) fall in 8 distinct bank groups.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/dependent_launch.cuh"
#include "kernels/mla_decode.hpp"
#include "kernels/mla_decode_tile.cuh"
#include "kernels/mma_sync.cuh"
#include "kernels/sm_count.hpp"

namespace troupe::kernels {
namespace {

using namespace mma;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kLora = 512, kRope = 64, kEntry = kLora + kRope;
constexpr int kKeys = 64;                        // keys per tile
constexpr int kChunks = kEntry / 8;              // 16-byte chunks per entry (72)
constexpr int kRowBytes = kEntry * 2;            // a Q row or cache entry in shared memory
constexpr int kPRowBytes = kKeys * 2;            // a P row
constexpr int kColsPerWarp = kLora / kWarps;     // O columns per warp (64)
static_assert(kChunks % 8 == 0, "the swizzle permutes chunks within aligned groups of 8");
static_assert(kColsPerWarp == 64 && kKeys == 64, "O tiles and P rows below assume 64");

// Shared memory layout (bytes) for kM row tiles.
template <int kM>
struct MmaSmem {
  static constexpr int kRows = 16 * kM;
  static constexpr int kQ = 0;                                  // [kRows][576] bf16
  static constexpr int kK = kQ + kRows * kRowBytes;             // 2 x [64][576] bf16
  static constexpr int kKBuffer = kKeys * kRowBytes;
  static constexpr int kP = kK + 2 * kKBuffer;                  // [kRows][64] bf16
  static constexpr int kRedMax = kP + kRows * kPRowBytes;       // [kWarps][16] fp32 partial maxima
  static constexpr int kRedSum = kRedMax + kWarps * 16 * 4;     // [kWarps][16] fp32 partial sums
  static constexpr int kCorr = kRedSum + kWarps * 16 * 4;       // [kRows] fp32 corrections
  static constexpr int kMax = kCorr + kRows * 4;                // [kRows] fp32 final maxima
  static constexpr int kBytes = kMax + kRows * 4;
};
static_assert(MmaSmem<2>::kBytes <= 227 * 1024, "more shared memory than one block may have");

template <int kM>
__global__ void __launch_bounds__(kThreads, 1)
    mla_decode_mma_kernel(const float* __restrict__ q_abs, const __nv_bfloat16* __restrict__ cache,
                          const int32_t* __restrict__ positions, const int32_t* __restrict__ seq_of_token,
                          const int32_t* __restrict__ tokens, const int32_t* __restrict__ block_tables,
                          int max_blocks, int block_size, int num_heads, float scale_log2, int partition_keys,
                          int min_keys, float* __restrict__ workspace, float* __restrict__ o_lat) {
  using L = MmaSmem<kM>;
  constexpr int kRows = L::kRows;
  constexpr int kGroups = kWarps / kM;  // key groups of the S phase
  constexpr int kNT = kM;               // n8 tiles of S per warp
  static_assert(kGroups * kNT * 8 == kKeys, "the S phase's warps cover the key tile");
  allow_dependents();
  wait_for_prerequisites();
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t base_addr = smem_address(smem);
  const uint32_t q_addr = base_addr + L::kQ, k_addr = base_addr + L::kK, p_addr = base_addr + L::kP;
  float* red_max = reinterpret_cast<float*>(smem + L::kRedMax);
  float* red_sum = reinterpret_cast<float*>(smem + L::kRedSum);
  float* corr_s = reinterpret_cast<float*>(smem + L::kCorr);
  float* max_s = reinterpret_cast<float*>(smem + L::kMax);

  const mla_tile::Work w =
      mla_tile::work_of_cta(positions, seq_of_token, tokens, block_tables, max_blocks, num_heads, partition_keys,
                            min_keys);
  if (mla_tile::empty_partition(w, num_heads, workspace)) return;  // the whole CTA, before any barrier
  const int h0 = w.h0, i = w.i, heads = w.heads, begin = w.begin, end = w.end;  // heads <= kRows
  const int32_t* table = w.table;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;

  // Copies keys [base, base + 64) into buffer `buf`: thread t copies chunks t % 4 + 4 k of key t / 4.
  auto load_tile = [&](int base, int buf) {
    const int key = threadIdx.x / 4, j = base + key;
    const bool valid = j < end;
    const __nv_bfloat16* src = cache;
    if (valid) src += (int64_t(table[j / block_size]) * block_size + j % block_size) * kEntry;
    const uint32_t dst = k_addr + buf * L::kKBuffer;
#pragma unroll
    for (int k = 0; k < kChunks / 4; ++k) {
      const int chunk = threadIdx.x % 4 + 4 * k;
      cp_async16(dst + swizzled(key, kRowBytes, chunk), valid ? src + chunk * 8 : src, valid ? 16 : 0);
    }
    cp_async_commit();
  };
  if (begin < end) load_tile(begin, 0);

  // Q of the tile's heads as bf16 (rows past `heads` zero), while the first tile is in flight.
  const float* q_src = q_abs + (int64_t(i) * num_heads + h0) * kEntry;
  for (int u = threadIdx.x; u < kRows * kChunks; u += kThreads) {
    const int r = u / kChunks, chunk = u % kChunks;
    float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
    if (r < heads) {
      a = __ldg(reinterpret_cast<const float4*>(q_src + int64_t(r) * kEntry + chunk * 8));
      b = __ldg(reinterpret_cast<const float4*>(q_src + int64_t(r) * kEntry + chunk * 8 + 4));
    }
    const uint4 packed = make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y),
                                    pack_bf16x2(b.z, b.w));
    *reinterpret_cast<uint4*>(smem + L::kQ + swizzled(r, kRowBytes, chunk)) = packed;
  }

  // S phase: row tile mt, keys [kg * 8 kNT, + 8 kNT) of the tile. Per row (g, g + 8) the running
  // max (identical in the kGroups warps of a row tile) and this thread's partial sum.
  const int mt = warp % kM, kg = warp / kM, key0 = kg * kNT * 8;
  const int a_row = 16 * mt + lane % 16;  // ldmatrix rows of Q (and of P in the O phase)
  float m_run[2] = {-INFINITY, -INFINITY}, l_part[2] = {0.0f, 0.0f};
  float o[kM][8][4];  // O phase: rows of tile mm, columns 64 warp + 8 n + 2c (+1)
#pragma unroll
  for (int mm = 0; mm < kM; ++mm)
#pragma unroll
    for (int n = 0; n < 8; ++n) o[mm][n][0] = o[mm][n][1] = o[mm][n][2] = o[mm][n][3] = 0.0f;

  int buf = 0;
  for (int base = begin; base < end; base += kKeys, buf ^= 1) {
    cp_async_wait_all();  // this thread's copies of tile `base`
    __syncthreads();      // everyone's copies (and Q) visible; everyone done with the previous tile
    if (base + kKeys < end) load_tile(base + kKeys, buf ^ 1);
    const uint32_t tile = k_addr + buf * L::kKBuffer;

    // 2. S = Q K^T over 18 steps of 32 dims.
    float s[kNT][4];
#pragma unroll
    for (int n = 0; n < kNT; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll 1
    for (int d = 0; d < kChunks / 4; ++d) {
      uint32_t a0[4], a1[4];
      ldmatrix_x4(a0, q_addr + swizzled(a_row, kRowBytes, 4 * d + lane / 16));
      ldmatrix_x4(a1, q_addr + swizzled(a_row, kRowBytes, 4 * d + 2 + lane / 16));
#pragma unroll
      for (int n = 0; n < kNT; ++n) {
        uint32_t kf[4];
        ldmatrix_x4(kf, tile + swizzled(key0 + 8 * n + lane % 8, kRowBytes, 4 * d + lane / 8));
        mma_bf16(s[n], a0, kf[0], kf[1]);
        mma_bf16(s[n], a1, kf[2], kf[3]);
      }
    }

    // 3. Log2-domain scores, keys past the end masked; the warp's row maxima to shared memory.
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kNT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = base + key0 + 8 * n + 2 * c + (e & 1);
        s[n][e] = key < end ? s[n][e] * scale_log2 : -INFINITY;
        mx[e / 2] = fmaxf(mx[e / 2], s[n][e]);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    }
    if (c == 0) {
      red_max[warp * 16 + g] = mx[0];
      red_max[warp * 16 + g + 8] = mx[1];
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int k = 0; k < kGroups; ++k) tile_max = fmaxf(tile_max, red_max[(k * kM + mt) * 16 + g + 8 * r]);
      const float m_new = fmaxf(m_run[r], tile_max);  // finite: key `base` is valid
      const float corr = exp2f(m_run[r] - m_new);     // 0 on the first tile
      m_run[r] = m_new;
      l_part[r] *= corr;
      if (kg == 0 && c == 0) corr_s[16 * mt + g + 8 * r] = corr;
    }
#pragma unroll
    for (int n = 0; n < kNT; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = exp2f(s[n][e] - m_run[e / 2]);  // 0 past the end
        l_part[e / 2] += s[n][e];
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = 16 * mt + g + 8 * r, key = key0 + 8 * n + 2 * c;
        *reinterpret_cast<uint32_t*>(smem + L::kP + swizzled(row, kPRowBytes, key / 8) + (key % 8) * 2) =
            pack_bf16x2(s[n][2 * r], s[n][2 * r + 1]);
      }
    }
    __syncthreads();

    // 4. O = corr * O + P V over 4 steps of 16 keys; V columns [64 warp, + 64) of the same tile.
#pragma unroll
    for (int mm = 0; mm < kM; ++mm) {
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
      uint32_t pf[kM][4];
#pragma unroll
      for (int mm = 0; mm < kM; ++mm)
        ldmatrix_x4(pf[mm], p_addr + swizzled(16 * mm + lane % 16, kPRowBytes, 2 * kk + lane / 16));
#pragma unroll
      for (int j = 0; j < kColsPerWarp / 16; ++j) {
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, tile + swizzled(16 * kk + v_key, kRowBytes, warp * (kColsPerWarp / 8) + 2 * j + lane / 16));
#pragma unroll
        for (int mm = 0; mm < kM; ++mm) {
          mma_bf16(o[mm][2 * j], pf[mm], vf[0], vf[1]);
          mma_bf16(o[mm][2 * j + 1], pf[mm], vf[2], vf[3]);
        }
      }
    }
  }

  // Row sums: the quad's partials, then the key groups' (through shared memory); maxima likewise.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_part[r] += __shfl_xor_sync(0xffffffffu, l_part[r], 1);
    l_part[r] += __shfl_xor_sync(0xffffffffu, l_part[r], 2);
  }
  __syncthreads();  // the last tile's readers of red_max are done
  if (c == 0) {
    red_sum[warp * 16 + g] = l_part[0];
    red_sum[warp * 16 + g + 8] = l_part[1];
    if (kg == 0) {
      max_s[16 * mt + g] = m_run[0];
      max_s[16 * mt + g + 8] = m_run[1];
    }
  }
  __syncthreads();
#pragma unroll
  for (int mm = 0; mm < kM; ++mm) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = 16 * mm + g + 8 * r;
      if (row >= heads) continue;
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < kGroups; ++k) sum += red_sum[(k * kM + mm) * 16 + g + 8 * r];
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

bool mla_decode_mma_supports(int64_t kv_lora, int64_t rope) { return kv_lora == kLora && rope == kRope; }

cudaError_t launch_mla_decode_mma_partials(const float* q_abs, const uint16_t* cache, const int32_t* positions,
                                           const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                           const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                           int64_t num_heads, int64_t kv_lora, int64_t rope, float scale,
                                           int64_t num_partitions, int64_t partition_keys, float* workspace,
                                           float* o_lat, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (!mla_decode_mma_supports(kv_lora, rope) || num_tokens < 0 || num_tokens > 65535 || num_heads <= 0 ||
      num_heads > 65535 * kMlaHeadTile || block_size <= 0 || max_blocks <= 0 || num_partitions < 1 ||
      num_partitions > kMlaMaxPartitions || partition_keys < 0 || partition_keys * num_partitions > INT32_MAX ||
      (num_partitions > 1 && workspace == nullptr) || reinterpret_cast<uintptr_t>(cache) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(q_abs) % 16 != 0)
    return cudaErrorInvalidValue;
  int sms = 1;
  if (cudaError_t err = current_sm_count(&sms); err != cudaSuccess) return err;
  const int64_t tile_heads = mla_decode_head_tile(num_tokens, num_heads, sms);
  if (tile_heads <= 32) {
    const bool one = tile_heads <= 16;
    return mla_tile::launch(one ? mla_decode_mma_kernel<1> : mla_decode_mma_kernel<2>, kThreads,
                            one ? MmaSmem<1>::kBytes : MmaSmem<2>::kBytes, q_abs, cache, positions, seq_of_token,
                            tokens, num_tokens, block_tables, max_blocks, block_size, num_heads, scale,
                            num_partitions, partition_keys, workspace, o_lat, stream, tile_heads);
  }
  if (const char* env = std::getenv("TROUPE_MLA_DECODE_WGMMA"); !env || std::strcmp(env, "0") != 0) {
    const cudaError_t tried =
        launch_mla_decode_wgmma(q_abs, cache, positions, seq_of_token, tokens, num_tokens, block_tables, max_blocks,
                                block_size, num_heads, scale, num_partitions, partition_keys, workspace, o_lat, stream);
    if (tried != cudaErrorNotSupported) return tried;
  }
  return launch_mla_decode_mma64(q_abs, cache, positions, seq_of_token, tokens, num_tokens, block_tables, max_blocks,
                                 block_size, num_heads, scale, num_partitions, partition_keys, workspace, o_lat, stream);
}

}  // namespace troupe::kernels
