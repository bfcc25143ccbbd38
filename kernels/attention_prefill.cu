// Prefill attention on tensor cores (attention_prefill.hpp): FlashAttention-2's forward pass over
// the paged K/V cache, mma.sync m16n8k16 bf16 with fp32 accumulation.
//
// One CTA of 4 warps per (query tile, kv head), kv heads fastest in launch order. A query tile holds kRows rows (128; 64 at head_dim
// 256), each a (token, q head) pair of the kv head's GQA group, heads fastest, so every K/V tile
// staged in shared memory serves the whole group. Warp w owns kWarpRows consecutive rows: two m16
// tiles (32 rows) at head_dim <= 128, so each K or V fragment read from shared memory feeds two
// mma.sync; one m16 tile at 256, where two tiles' O would not fit in registers. (The kernel this
// replaced gave each of 8 warps 16 rows: every warp read the whole K/V tile for 16 rows, 1.6x this
// one's shared-memory reads per FLOP at head_dim 128, and one CTA per SM, so nothing hid its
// barriers; it ran at 0.21 of the H200's measured bf16 GEMM rate, docs/ARCHITECTURE.md.)
// Per key tile of kKeys keys (64; 32 at head_dim 256):
//   1. The tile is in shared memory as bf16 rows padded by 16 bytes (the 8 rows an ldmatrix phase
//      reads fall in distinct banks). From a bf16 cache cp.async copies tile t + 1 into the other
//      of two buffers while tile t is multiplied; from an fp8 or fp32 cache cp.async copies tile
//      t + 1's raw bytes into a staging buffer, widened to bf16 (exactly for e4m3) at the top of
//      the next iteration. Keys past the query tile's last position are zero-filled, never read
//      (their table entries may be -1 and their slots NaN; P = 0 times NaN would be NaN).
//   2. S [warp rows, kKeys] = Q K^T in fp32 C fragments. Q was scaled by scale * log2(e) before its
//      bf16 rounding, so S is in the log2 domain; Q's A fragments stay in registers where they fit
//      (rows x head_dim <= 128 per warp), else come by ldmatrix each tile.
//   3. Causal mask (key > the row's position: -inf) only on tiles that cross a row's position;
//      tiles past every row of a warp are skipped by that warp. Online softmax per row in fp32:
//      the row's kKeys scores live in one quad (4 lanes), maxima by two xor shuffles, p = 2^(s - m),
//      O and the partial sum rescaled by 2^(m_old - m_new).
//   4. The S accumulators of two adjacent n8 tiles, rounded to bf16, are P's A fragment for those
//      16 keys (the m16n8 C layout is the m16k16 A layout), so O [warp rows, D] += P V takes P
//      straight from registers, V by ldmatrix.trans. O stays in registers until the one write.
// Barriers: one per tile (two from an fp8/fp32 cache: widened tile visible, staging buffer free).
// Shared memory at head_dim 128: Q 34 KiB + 2 K/V buffers of 34 KiB (bf16 cache; two CTAs per
// SM), Q + 1 buffer + 16 KiB fp8 staging (two CTAs), Q + 1 buffer + 64 KiB fp32 staging (one CTA).
// Registers (ptxas 13.0, sm_90a): 255 at head_dim 128 with 8 bytes spilled from a bf16 cache (12
// fp8, 80 fp32), 143-242 and no spills at the other head dims.
//
// Fragments (mma_sync.cuh): g = lane / 4, c = lane % 4; C: c0, c1 = (row g, cols 2c, 2c + 1), c2, c3
// = (row g + 8, same cols). ldmatrix lane addresses, 16 rows x 16 columns per x4:
//   A = Q [row][dim]:  row l % 16, dim 8 (l / 16)                  -> a0..a3 of one k16 step;
//   B = K [key][dim]:  key l % 8 + 8 (l / 16), dim 8 ((l / 8) % 2) -> b0, b1 of keys 0-7, then 8-15;
//   B = V [key][dim] (.trans): key l % 8 + 8 ((l / 8) % 2), dim 8 (l / 16)
//                                                                  -> b0, b1 of dims 0-7, then 8-15.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/attention_prefill.hpp"
#include "kernels/mma_sync.cuh"

namespace troupe::kernels {
namespace {

using namespace mma;

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;

// Query rows per tile: 128, or 64 at head_dim 256 (one m16 tile per warp there).
constexpr int tile_rows(int64_t head_dim) { return head_dim > 128 ? 64 : 128; }

// Tile shapes and the shared-memory layout (byte offsets) of one CTA.
template <int D, typename CacheT>
struct PrefillLayout {
  static constexpr int kMTiles = D > 128 ? 1 : 2;  // m16 tiles per warp
  static constexpr int kWarpRows = 16 * kMTiles;
  static constexpr int kRows = kWarps * kWarpRows;
  static constexpr int kKeys = D > 128 ? 32 : 64;  // keys per K/V tile
  static constexpr bool kDirect = sizeof(CacheT) == 2;  // bf16 cache: copied straight into the tiles
  static constexpr bool kQInRegisters = kMTiles * D <= 128;
  static constexpr int kRowBytes = (D + 8) * 2;          // a padded bf16 row of Q, K or V
  static constexpr int kTileBytes = kKeys * kRowBytes;   // one K (or V) tile
  static constexpr int kBufferBytes = 2 * kTileBytes;    // K tile, then V tile
  static constexpr int kBuffers = kDirect ? 2 : 1;
  static constexpr int kRawRowBytes = D * int(sizeof(CacheT));  // a cache row as stored
  static constexpr int kRawTileBytes = kKeys * kRawRowBytes;
  static constexpr int kQ = 0;                                   // [kRows][kRowBytes]
  static constexpr int kKv = kQ + kRows * kRowBytes;             // kBuffers K/V buffers
  static constexpr int kRaw = kKv + kBuffers * kBufferBytes;     // raw K tile, then raw V tile
  static constexpr int kBytes = kRaw + (kDirect ? 0 : 2 * kRawTileBytes);
  static_assert(kRows == tile_rows(D), "prefill_tokens_per_tile counts these rows");
  static_assert(D % 16 == 0 && kKeys % 16 == 0, "whole k16 steps of Q K^T and P V");
  static_assert(kRawRowBytes % 16 == 0 && kThreads % (kRawRowBytes / 16) == 0, "16-byte copies, fixed columns");
  static_assert(kKv % 16 == 0 && kRaw % 16 == 0, "16-byte aligned buffers");
  static_assert(kBytes <= 227 * 1024, "more shared memory than one block may have");
};

// 2^x on the SFU (2 ulp); 2^-inf = +0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Eight cache elements from shared memory as eight bf16 (one 16-byte row chunk of a tile).
__device__ __forceinline__ uint4 widen8(const float* src) {
  const float4 a = reinterpret_cast<const float4*>(src)[0], b = reinterpret_cast<const float4*>(src)[1];
  return make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y), pack_bf16x2(b.z, b.w));
}
// Two e4m3 bytes (the lower element in the low byte) as bf16x2: every e4m3 value is an fp16 and a
// bf16 value, so both steps are exact.
__device__ __forceinline__ uint32_t e4m3x2_to_bf16x2(uint32_t bytes) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(bytes & 0xffffu), __NV_E4M3);
  const float2 f = __half22float2(__half2(h));
  return pack_bf16x2(f.x, f.y);
}
__device__ __forceinline__ uint4 widen8(const __nv_fp8_e4m3* src) {
  const uint2 v = *reinterpret_cast<const uint2*>(src);
  return make_uint4(e4m3x2_to_bf16x2(v.x), e4m3x2_to_bf16x2(v.x >> 16), e4m3x2_to_bf16x2(v.y),
                    e4m3x2_to_bf16x2(v.y >> 16));
}

// Starts copying keys [kv0, kv0 + kKeys) of the kv head's K and V cache rows (as stored) to
// k_dst / v_dst (shared addresses, rows dst_row_bytes apart): 16-byte chunks; thread x copies
// column x % kChunks of keys x / kChunks + kKeyStep i, so the key's (table entry, offset in block)
// advance without a division per copy. Keys at or past num_keys read nothing and are zero-filled.
// One commit group.
template <int kKeys, int kRawRowBytes, int dst_row_bytes>
__device__ __forceinline__ void copy_tile_async(const unsigned char* __restrict__ k_cache,
                                                const unsigned char* __restrict__ v_cache,
                                                const int32_t* __restrict__ table, int block_size, int num_kv_heads,
                                                int kv_head, int kv0, int num_keys, uint32_t k_dst, uint32_t v_dst) {
  constexpr int kChunks = kRawRowBytes / 16;    // per row
  constexpr int kKeyStep = kThreads / kChunks;  // keys per pass of the CTA
  const int chunk = threadIdx.x % kChunks;
  int key = threadIdx.x / kChunks, j = kv0 + key;
  int block = j / block_size, in_block = j - block * block_size;
#pragma unroll
  for (int it = 0; it < (kKeys + kKeyStep - 1) / kKeyStep; ++it) {
    if (kKeys % kKeyStep == 0 || key < kKeys) {
      const bool valid = j < num_keys;
      int64_t offset = 0;  // a valid address even when nothing is read
      if (valid) offset = ((int64_t(table[block]) * block_size + in_block) * num_kv_heads + kv_head) * kRawRowBytes;
      offset += chunk * 16;
      const uint32_t dst = uint32_t(key * dst_row_bytes + chunk * 16);
      cp_async16(k_dst + dst, k_cache + offset, valid ? 16 : 0);
      cp_async16(v_dst + dst, v_cache + offset, valid ? 16 : 0);
    }
    key += kKeyStep;
    j += kKeyStep;
    for (in_block += kKeyStep; in_block >= block_size; in_block -= block_size) ++block;
  }
  cp_async_commit();
}

// Widens the staged raw K and V tiles (fp8 or fp32 rows) into the bf16 K/V buffer at kv.
template <int D, typename CacheT>
__device__ __forceinline__ void widen_tile(const unsigned char* raw, unsigned char* kv) {
  using L = PrefillLayout<D, CacheT>;
  constexpr int kGroups = D / 8;  // 8 elements (16 bf16 bytes) per step
  constexpr int kSteps = 2 * L::kKeys * kGroups;
#pragma unroll 2  // more loads in flight would cost registers while O is live
  for (int it = 0; it < (kSteps + kThreads - 1) / kThreads; ++it) {
    const int u = threadIdx.x + it * kThreads;
    if (kSteps % kThreads != 0 && u >= kSteps) break;
    const int row = u / kGroups, col = (u % kGroups) * 8;  // rows: kKeys of K, then kKeys of V
    const CacheT* src = reinterpret_cast<const CacheT*>(raw + row * L::kRawRowBytes) + col;
    *reinterpret_cast<uint4*>(kv + row * L::kRowBytes + col * 2) = widen8(src);
  }
}

template <int D, typename CacheT>
__global__ void __launch_bounds__(kThreads, 2)
    prefill_attention_kernel(const float* __restrict__ q, const CacheT* __restrict__ k_cache,
                             const CacheT* __restrict__ v_cache, const int32_t* __restrict__ positions,
                             const int32_t* __restrict__ tiles, const int32_t* __restrict__ block_tables,
                             int max_blocks, int block_size, int num_heads, int num_kv_heads, float q_scale,
                             float out_scale, float* __restrict__ out) {
  using L = PrefillLayout<D, CacheT>;
  constexpr int M = L::kMTiles, kKeys = L::kKeys, kRowBytes = L::kRowBytes;
  constexpr int kSTiles = kKeys / 8;  // n8 tiles of S
  constexpr int kOTiles = D / 8;      // n8 tiles of O
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t q_addr = smem_address(smem + L::kQ), kv_addr = smem_address(smem + L::kKv);

  // Blocks run in blockIdx order: kv heads fastest, so the tiles with the most keys (first in
  // `tiles`) start first for every head, and the short ones fill the tail.
  const int group = num_heads / num_kv_heads, kv_head = int(blockIdx.x % unsigned(num_kv_heads));
  const int32_t* tile = tiles + 3 * int64_t(blockIdx.x / unsigned(num_kv_heads));
  const int token_begin = tile[0], token_end = tile[1];
  const int32_t* table = block_tables + int64_t(tile[2]) * max_blocks;
  const int num_rows = (token_end - token_begin) * group;  // <= kRows
  const int num_keys = positions[token_end - 1] + 1;       // the last token sees the most keys
  const int num_tiles = (num_keys + kKeys - 1) / kKeys;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int warp_row0 = warp * L::kWarpRows;

  // Tile t's copies: into K/V buffer t % 2 (bf16 cache) or the raw staging buffer.
  const auto* k_bytes = reinterpret_cast<const unsigned char*>(k_cache);
  const auto* v_bytes = reinterpret_cast<const unsigned char*>(v_cache);
  auto start_tile = [&](int t) {
    if constexpr (L::kDirect) {
      const uint32_t dst = kv_addr + uint32_t(t % 2) * L::kBufferBytes;
      copy_tile_async<kKeys, L::kRawRowBytes, kRowBytes>(k_bytes, v_bytes, table, block_size, num_kv_heads, kv_head,
                                                         t * kKeys, num_keys, dst, dst + L::kTileBytes);
    } else {
      const uint32_t dst = smem_address(smem + L::kRaw);
      copy_tile_async<kKeys, L::kRawRowBytes, L::kRawRowBytes>(k_bytes, v_bytes, table, block_size, num_kv_heads,
                                                               kv_head, t * kKeys, num_keys, dst,
                                                               dst + L::kRawTileBytes);
    }
  };
  start_tile(0);

  // Q rows, scaled into the log2 domain and rounded to bf16, while tile 0 is in flight; rows past
  // num_rows are zero. Row r is token token_begin + r / group, head kv_head * group + r % group.
  constexpr int kVecs = D / 4;  // float4 per row
#pragma unroll 4
  for (int i = threadIdx.x; i < L::kRows * kVecs; i += kThreads) {
    const int r = i / kVecs, col = (i % kVecs) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < num_rows) {
      const int64_t t = token_begin + r / group, h = int64_t(kv_head) * group + r % group;
      v = __ldg(reinterpret_cast<const float4*>(q + (t * num_heads + h) * D + col));
    }
    *reinterpret_cast<uint2*>(smem + L::kQ + r * kRowBytes + col * 2) =
        make_uint2(pack_bf16x2(v.x * q_scale, v.y * q_scale), pack_bf16x2(v.z * q_scale, v.w * q_scale));
  }
  __syncthreads();

  // Lane addresses (see the top): Q of the warp's first m16 tile, K and V within a K/V buffer.
  const uint32_t q_lane = q_addr + uint32_t((warp_row0 + lane % 16) * kRowBytes + 16 * (lane / 16));
  const uint32_t k_lane = uint32_t((lane % 8 + 8 * (lane / 16)) * kRowBytes + 16 * ((lane / 8) % 2));
  const uint32_t v_lane = uint32_t(L::kTileBytes + (lane % 8 + 8 * ((lane / 8) % 2)) * kRowBytes + 16 * (lane / 16));
  uint32_t q_regs[L::kQInRegisters ? D / 16 : 1][M][4];
  if constexpr (L::kQInRegisters) {
#pragma unroll
    for (int d = 0; d < D / 16; ++d)
#pragma unroll
      for (int m = 0; m < M; ++m) ldmatrix_x4(q_regs[d][m], q_lane + m * 16 * kRowBytes + d * 32);
  }

  // This lane's rows: warp_row0 + 16 m + g + 8 i; position -1 marks a padding row (all masked).
  int row_pos[M][2];
  int warp_max = -1, warp_min = INT_MAX;
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = warp_row0 + 16 * m + g + 8 * i;
      row_pos[m][i] = r < num_rows ? positions[token_begin + r / group] : -1;
      warp_max = max(warp_max, row_pos[m][i]);
      warp_min = min(warp_min, row_pos[m][i]);
    }
  for (int o = 16; o > 0; o /= 2) {
    warp_max = max(warp_max, __shfl_xor_sync(0xffffffffu, warp_max, o));
    warp_min = min(warp_min, __shfl_xor_sync(0xffffffffu, warp_min, o));
  }

  float row_max[M][2], row_sum[M][2];  // log2 domain; row_sum: this lane's partial over its columns
  float o_acc[M][kOTiles][4];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    row_max[m][0] = row_max[m][1] = -INFINITY;
    row_sum[m][0] = row_sum[m][1] = 0.0f;
#pragma unroll
    for (int j = 0; j < kOTiles; ++j) o_acc[m][j][0] = o_acc[m][j][1] = o_acc[m][j][2] = o_acc[m][j][3] = 0.0f;
  }

  for (int t = 0; t < num_tiles; ++t) {
    cp_async_wait_all();  // this thread's copies of tile t
    __syncthreads();      // everyone's copies of tile t; everyone done with tile t - 1's buffer
    const uint32_t kv = kv_addr + (L::kDirect ? uint32_t(t % 2) * L::kBufferBytes : 0u);
    if constexpr (!L::kDirect) {
      widen_tile<D, CacheT>(smem + L::kRaw, smem + L::kKv);
      __syncthreads();  // the widened tile is visible; the staging buffer may be refilled
    }
    if (t + 1 < num_tiles) start_tile(t + 1);
    const int kv0 = t * kKeys;
    if (kv0 > warp_max) continue;  // every row of this warp is before this tile (no barrier below)

    // S = Q K^T.
    float s[M][kSTiles][4];
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int n = 0; n < kSTiles; ++n) s[m][n][0] = s[m][n][1] = s[m][n][2] = s[m][n][3] = 0.0f;
#pragma unroll
    for (int d = 0; d < D / 16; ++d) {
      uint32_t qf[M][4];
#pragma unroll
      for (int m = 0; m < M; ++m) {
        if constexpr (L::kQInRegisters) {
#pragma unroll
          for (int e = 0; e < 4; ++e) qf[m][e] = q_regs[d][m][e];
        } else {
          ldmatrix_x4(qf[m], q_lane + m * 16 * kRowBytes + d * 32);
        }
      }
#pragma unroll
      for (int n2 = 0; n2 < kKeys / 16; ++n2) {
        uint32_t kf[4];
        ldmatrix_x4(kf, kv + k_lane + n2 * 16 * kRowBytes + d * 32);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          mma_bf16(s[m][2 * n2], qf[m], kf[0], kf[1]);
          mma_bf16(s[m][2 * n2 + 1], qf[m], kf[2], kf[3]);
        }
      }
    }

    // Causal mask where the tile reaches past a row's position (keys past num_keys included).
    if (kv0 + kKeys - 1 > warp_min) {
#pragma unroll
      for (int m = 0; m < M; ++m)
#pragma unroll
        for (int n = 0; n < kSTiles; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (kv0 + 8 * n + 2 * c + (e & 1) > row_pos[m][e / 2]) s[m][n][e] = -INFINITY;
    }

    // Online softmax: row (m, i) is s[m][*][2i..2i+1] over the quad's 4 lanes. The probabilities go
    // straight into P's bf16 A fragments: S tiles 2 kk and 2 kk + 1 are k16 step kk, a0/a1 the
    // rows g/g + 8 of tile 2 kk, a2/a3 those of tile 2 kk + 1. The sum takes them unrounded.
    uint32_t p_frag[M][kKeys / 16][4];
    float rescale[M][2];  // 2^(old max - new max) per row
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        float mx = row_max[m][i];
#pragma unroll
        for (int n = 0; n < kSTiles; ++n) mx = fmaxf(mx, fmaxf(s[m][n][2 * i], s[m][n][2 * i + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float base = mx == -INFINITY ? 0.0f : mx;  // all masked so far: p = 0, no NaN
        const float alpha = fast_exp2(row_max[m][i] - base);
        row_max[m][i] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < kSTiles; ++n) {
          const float p0 = fast_exp2(s[m][n][2 * i] - base), p1 = fast_exp2(s[m][n][2 * i + 1] - base);
          sum += p0 + p1;
          p_frag[m][n / 2][2 * (n % 2) + i] = pack_bf16x2(p0, p1);
        }
        row_sum[m][i] = row_sum[m][i] * alpha + sum;
        rescale[m][i] = alpha;
      }
    // O's rows rescaled to the new maxima (D / 2 multiplies per row and lane), skipped when no
    // row of the warp has a new maximum.
    bool moved = false;
#pragma unroll
    for (int m = 0; m < M; ++m) moved |= rescale[m][0] != 1.0f || rescale[m][1] != 1.0f;
    if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
      for (int m = 0; m < M; ++m)
#pragma unroll
        for (int j = 0; j < kOTiles; ++j) {
          o_acc[m][j][0] *= rescale[m][0];
          o_acc[m][j][1] *= rescale[m][0];
          o_acc[m][j][2] *= rescale[m][1];
          o_acc[m][j][3] *= rescale[m][1];
        }
    }

    // O += P V, 16 keys per step.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
#pragma unroll
      for (int jj = 0; jj < D / 16; ++jj) {
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, kv + v_lane + kk * 16 * kRowBytes + jj * 32);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          mma_bf16(o_acc[m][2 * jj], p_frag[m][kk], vf[0], vf[1]);
          mma_bf16(o_acc[m][2 * jj + 1], p_frag[m][kk], vf[2], vf[3]);
        }
      }
    }
  }

  // out = O / sum: the quad's partial sums add up to the row's; float2 stores of the C fragments.
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float sum = row_sum[m][i];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int r = warp_row0 + 16 * m + g + 8 * i;
      if (r >= num_rows) continue;
      const int64_t t = token_begin + r / group, h = int64_t(kv_head) * group + r % group;
      const float inv = out_scale / sum;  // out_scale: an fp8 cache's v_scale, else 1
      float* dst = out + (t * num_heads + h) * D + 2 * c;
#pragma unroll
      for (int j = 0; j < kOTiles; ++j)
        *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o_acc[m][j][2 * i] * inv, o_acc[m][j][2 * i + 1] * inv);
    }
}

template <int D, typename CacheT>
cudaError_t launch(const float* q, const CacheT* k_cache, const CacheT* v_cache, const int32_t* positions,
                   const int32_t* tiles, int64_t num_tiles, const int32_t* block_tables, int64_t max_blocks,
                   int64_t block_size, int64_t num_heads, int64_t num_kv_heads, float scale, float out_scale,
                   float* out, cudaStream_t stream) {
  constexpr int kSmem = PrefillLayout<D, CacheT>::kBytes;
  auto* kernel = prefill_attention_kernel<D, CacheT>;
  // Opt in to more than 48 KiB of dynamic shared memory (per device, so on every launch), and ask
  // for the largest shared-memory carveout so two CTAs fit beside each other.
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
      err != cudaSuccess)
    return err;
  if (cudaError_t err =
          cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
      err != cudaSuccess)
    return err;
  const dim3 grid(static_cast<unsigned>(num_tiles * num_kv_heads));
  kernel<<<grid, kThreads, kSmem, stream>>>(q, k_cache, v_cache, positions, tiles, block_tables, int(max_blocks),
                                            int(block_size), int(num_heads), int(num_kv_heads), scale * kLog2e,
                                            out_scale, out);
  return cudaGetLastError();
}

template <typename CacheT>
cudaError_t launch_any(const float* q, const CacheT* k_cache, const CacheT* v_cache, const int32_t* positions,
                       const int32_t* tiles, int64_t num_tiles, const int32_t* block_tables, int64_t max_blocks,
                       int64_t block_size, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                       float out_scale, float* out, cudaStream_t stream) {
  if (num_tiles == 0) return cudaSuccess;
  if (num_tiles < 0 || num_kv_heads <= 0 || num_kv_heads > 65535 || num_tiles > INT32_MAX / num_kv_heads ||
      num_heads % num_kv_heads != 0 || block_size <= 0 || max_blocks <= 0 ||
      !prefill_attention_supports(head_dim, num_heads / num_kv_heads))
    return cudaErrorInvalidValue;
  // cp.async copies 16-byte chunks: cache bases 16-byte aligned (cudaMalloc gives 256 bytes).
  if (reinterpret_cast<uintptr_t>(k_cache) % 16 != 0 || reinterpret_cast<uintptr_t>(v_cache) % 16 != 0)
    return cudaErrorInvalidValue;
  switch (head_dim) {
    case 16:
      return launch<16>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                        num_heads, num_kv_heads, scale, out_scale, out, stream);
    case 32:
      return launch<32>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                        num_heads, num_kv_heads, scale, out_scale, out, stream);
    case 64:
      return launch<64>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                        num_heads, num_kv_heads, scale, out_scale, out, stream);
    case 128:
      return launch<128>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                         num_heads, num_kv_heads, scale, out_scale, out, stream);
    default:
      return launch<256>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                         num_heads, num_kv_heads, scale, out_scale, out, stream);
  }
}

}  // namespace

bool prefill_attention_supports(int64_t head_dim, int64_t group) {
  const bool dim_ok = head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
  return dim_ok && group >= 1 && group <= tile_rows(head_dim);
}

int64_t prefill_tokens_per_tile(int64_t head_dim, int64_t group) {
  return std::max<int64_t>(1, tile_rows(head_dim) / std::max<int64_t>(1, group));
}

std::vector<int32_t> build_prefill_tiles(const int32_t* query_start, const int32_t* context_lens, int64_t num_seqs,
                                         int64_t tokens_per_tile_in) {
  struct Tile {
    int32_t begin, end, seq, last_pos;
  };
  std::vector<Tile> found;
  const int32_t tokens_per_tile = int32_t(std::max<int64_t>(1, tokens_per_tile_in));
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int32_t begin = query_start[s], end = query_start[s + 1];
    if (end - begin <= 1) continue;  // decode tokens go elsewhere
    const int32_t first_pos = context_lens[s] - (end - begin);
    for (int32_t t = begin; t < end; t += tokens_per_tile) {
      const int32_t tile_end = std::min(end, t + tokens_per_tile);
      found.push_back({t, tile_end, int32_t(s), first_pos + (tile_end - 1 - begin)});
    }
  }
  std::stable_sort(found.begin(), found.end(), [](const Tile& a, const Tile& b) { return a.last_pos > b.last_pos; });
  std::vector<int32_t> tiles;
  tiles.reserve(found.size() * 3);
  for (const Tile& t : found) {
    tiles.push_back(t.begin);
    tiles.push_back(t.end);
    tiles.push_back(t.seq);
  }
  return tiles;
}

cudaError_t launch_prefill_attention_bf16(const float* q, const float* k_cache, const float* v_cache,
                                          const int32_t* positions, const int32_t* tiles, int64_t num_tiles,
                                          const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                          int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                          float* out, cudaStream_t stream) {
  return launch_any(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size, num_heads,
                    num_kv_heads, head_dim, scale, 1.0f, out, stream);
}

cudaError_t launch_prefill_attention_bf16(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                          const int32_t* positions, const int32_t* tiles, int64_t num_tiles,
                                          const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                          int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                          float* out, cudaStream_t stream) {
  return launch_any(q, reinterpret_cast<const __nv_bfloat16*>(k_cache),
                    reinterpret_cast<const __nv_bfloat16*>(v_cache), positions, tiles, num_tiles, block_tables,
                    max_blocks, block_size, num_heads, num_kv_heads, head_dim, scale, 1.0f, out, stream);
}

cudaError_t launch_prefill_attention_bf16(const float* q, const uint8_t* k_cache, const uint8_t* v_cache,
                                          const int32_t* positions, const int32_t* tiles, int64_t num_tiles,
                                          const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                          int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                                          float k_scale, float v_scale, float* out, cudaStream_t stream) {
  return launch_any(q, reinterpret_cast<const __nv_fp8_e4m3*>(k_cache),
                    reinterpret_cast<const __nv_fp8_e4m3*>(v_cache), positions, tiles, num_tiles, block_tables,
                    max_blocks, block_size, num_heads, num_kv_heads, head_dim, scale * k_scale, v_scale, out, stream);
}

}  // namespace troupe::kernels
