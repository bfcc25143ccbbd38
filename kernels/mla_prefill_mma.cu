// Tensor-core MLA prefill (mla_prefill.hpp): flash attention over the expanded keys and values of
// DeepSeek-V2/V3/R1 (qk = nope 128 + rope 64, v 128), causal, many sequences per launch.
//
// Work unit: one CTA (kWarps = 4 warps) per (query tile of one sequence, head); kM m16 row tiles
// per warp: kM = 1 (64-row tiles, 64-key K/V tiles; the warp's Q fragments, rounded to bf16 once,
// stay in registers) or kM = 2 (128-row tiles, 32-key K/V tiles; Q fragments come from shared memory
// at each k step, and each K / V fragment feeds two MMAs). Per K/V tile:
//   1. cp.async copies K = [k_nope (from kv) | k_pe] (kKeys x 192 bf16) and V (kKeys x 128 bf16)
//      into one of two shared buffers (tile t + 1 is in flight while tile t computes); keys past
//      the tile's last visible key are zero-filled.
//   2. S = Q K^T [16 kM, kKeys] per warp on mma.sync m16n8k16 (bf16 in, fp32 accumulate), K by
//      ldmatrix.
//   3. Causal mask (only on tiles that reach past the warp's first query position), online softmax
//      in fp32, log2 domain; each row's max and sum stay in the 4 threads of its quad.
//   4. O [16 kM, 128] += P V: P straight from the S accumulators (rounded to bf16), V by
//      ldmatrix.trans.
// Barriers per K/V tile: two (tile landed; everyone done with it before it is overwritten).
//
// Resources (sm_90a, ptxas -v): 254-255 registers for both variants (one of them spills 52 bytes),
// shared memory 106,496 (kM 1) / 90,112 (kM 2) bytes: two CTAs per SM. Measured on an H200
// (dsv3_mla_bench, 4,096 tokens x 128 heads): 3.36 ms = 0.26 of the bf16 cuBLAS rate (kM 1),
// 2.88 ms = 0.30 (kM 2); at 1,024 tokens both 0.19. Every warp reads all of K and V from shared
// memory through ldmatrix (kM 1: 256 bytes per MMA), so shared-memory bandwidth bounds it; next:
// wgmma with K/V read by the tensor cores from shared memory (FA3 / FlashMLA), or kM 2 with fewer
// registers (Q fragments for two k steps at a time).
//
// Precision: q, K, V and P are bf16 (relative 2^-9 each), every sum fp32: the output differs from
// the fp32 reference by ~1e-3 of its magnitude (NMSE ~1e-5).
//
// Fragments and ldmatrix addressing as mla_decode_mma.cu documents (PTX ISA "Matrix Fragments for
// mma.m16n8k16"): g = lane / 4, c = lane % 4; C: c0, c1 = (row g, cols 2c, 2c + 1), c2, c3 = (row
// g + 8, same cols). Shared rows are 16-byte chunks swizzled as chunk ^ (row % 8).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/mla_prefill.hpp"
#include "kernels/mma_sync.cuh"

namespace troupe::kernels {
namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kNope = 128, kRope = 64, kQk = kNope + kRope, kV = 128;
constexpr int kQkChunks = kQk / 8, kNopeChunks = kNope / 8, kVChunks = kV / 8;  // 24, 16, 16
constexpr int kQkBytes = kQk * 2, kVBytes = kV * 2;                             // shared row bytes
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kQkChunks % 8 == 0 && kVChunks % 8 == 0, "the swizzle permutes chunks within groups of 8");

// kM m16 row tiles per warp (kRows = 64 kM query rows per CTA), kKeys keys per K/V tile.
template <int kM, int kKeys>
struct Smem {
  static constexpr int kRows = 16 * kM * kWarps;
  static constexpr int kQ = 0;                             // [kRows][192] bf16
  static constexpr int kK = kQ + kRows * kQkBytes;         // 2 x [kKeys][192] bf16
  static constexpr int kKBuffer = kKeys * kQkBytes;
  static constexpr int kVOff = kK + 2 * kKBuffer;          // 2 x [kKeys][128] bf16
  static constexpr int kVBuffer = kKeys * kVBytes;
  static constexpr int kBytes = kVOff + 2 * kVBuffer;      // 106,496 (1, 64) / 90,112 (2, 32): two CTAs per SM
};

using mma::cp_async16;
using mma::cp_async_commit;
using mma::cp_async_wait;
using mma::ldmatrix_x4;
using mma::ldmatrix_x4_trans;
using mma::mma_bf16;
using mma::pack_bf16x2;
using mma::smem_address;
using mma::swizzled;

// tiles[4 * blockIdx.x ..] = {token0, num_rows, pos0, key0}: query rows token0 .. token0 + num_rows
// - 1 of q / out, row r at position pos0 + r, sees keys key0 + [0, pos0 + r] of kv / k_pe.
// kM == 1 keeps the warp's Q fragments in registers; kM == 2 reads them from shared memory at each
// k step and uses every K / V fragment twice (half the shared-memory traffic per MMA).
template <int kM, int kKeys>
__global__ void __launch_bounds__(kThreads, 2)
    mla_prefill_mma_kernel(const float* __restrict__ q, const __nv_bfloat16* __restrict__ kv,
                           const __nv_bfloat16* __restrict__ k_pe, const int32_t* __restrict__ tiles, int num_heads,
                           float scale_log2, float* __restrict__ out) {
  using L = Smem<kM, kKeys>;
  constexpr int kRows = L::kRows, kWarpRows = 16 * kM;
  constexpr int kQChunksPerThread = kRows * kQkChunks / kThreads;
  static_assert(kKeys % 16 == 0 && kKeys * kQkChunks % kThreads == 0 && kKeys * kVChunks % kThreads == 0, "tiles");
  allow_dependents();
  wait_for_prerequisites();
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t base = smem_address(smem);
  const uint32_t q_addr = base + L::kQ, k_addr = base + L::kK, v_addr = base + L::kVOff;
  const MlaPrefillTile tile = mla_prefill_tile(tiles, blockIdx.x);
  const int token0 = tile.token0, num_rows = tile.num_rows, pos0 = tile.pos0, num_keys = tile.num_keys;
  const int64_t key0 = tile.key0;
  const int h = blockIdx.y;
  const int num_tiles = (num_keys + kKeys - 1) / kKeys;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int64_t kv_row = int64_t(num_heads) * (kNope + kV);

  auto load_tile = [&](int t, int buf) {
    const int kbase = t * kKeys;
    const uint32_t kdst = k_addr + buf * L::kKBuffer, vdst = v_addr + buf * L::kVBuffer;
#pragma unroll
    for (int i = 0; i < kKeys * kQkChunks / kThreads; ++i) {
      const int u = threadIdx.x + i * kThreads, key = u / kQkChunks, chunk = u % kQkChunks;
      const bool valid = kbase + key < num_keys;
      const int64_t j = key0 + kbase + key;
      const __nv_bfloat16* src = chunk < kNopeChunks ? kv + j * kv_row + h * (kNope + kV) + chunk * 8
                                                     : k_pe + j * kRope + (chunk - kNopeChunks) * 8;
      cp_async16(kdst + swizzled(key, kQkBytes, chunk), valid ? src : kv, valid ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < kKeys * kVChunks / kThreads; ++i) {
      const int u = threadIdx.x + i * kThreads, key = u / kVChunks, chunk = u % kVChunks;
      const bool valid = kbase + key < num_keys;
      const __nv_bfloat16* src = kv + (key0 + kbase + key) * kv_row + h * (kNope + kV) + kNope + chunk * 8;
      cp_async16(vdst + swizzled(key, kVBytes, chunk), valid ? src : kv, valid ? 16 : 0);
    }
    cp_async_commit();
  };
  load_tile(0, 0);

  // Q rows as bf16 (rows past num_rows zero), while the first tile is in flight.
#pragma unroll 4
  for (int i = 0; i < kQChunksPerThread; ++i) {
    const int u = threadIdx.x + i * kThreads, r = u / kQkChunks, chunk = u % kQkChunks;
    float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
    if (r < num_rows) {
      const float* src = q + (int64_t(token0 + r) * num_heads + h) * kQk + chunk * 8;
      a = __ldg(reinterpret_cast<const float4*>(src));
      b = __ldg(reinterpret_cast<const float4*>(src + 4));
    }
    const uint4 packed = make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y),
                                    pack_bf16x2(b.z, b.w));
    *reinterpret_cast<uint4*>(smem + L::kQ + swizzled(r, kQkBytes, chunk)) = packed;
  }
  __syncthreads();
  const int a_row = kWarpRows * warp + lane % 16;  // ldmatrix row of Q for m tile 0 (+ 16 mm)
  uint32_t qf[kM == 1 ? kQk / 16 : 1][4];
  if constexpr (kM == 1) {
#pragma unroll
    for (int ks = 0; ks < kQk / 16; ++ks) ldmatrix_x4(qf[ks], q_addr + swizzled(a_row, kQkBytes, 2 * ks + lane / 16));
  }

  float o[kM][kV / 8][4];
#pragma unroll
  for (int mm = 0; mm < kM; ++mm)
#pragma unroll
    for (int n = 0; n < kV / 8; ++n) o[mm][n][0] = o[mm][n][1] = o[mm][n][2] = o[mm][n][3] = 0.0f;
  float m_run[kM][2], l_run[kM][2];
#pragma unroll
  for (int mm = 0; mm < kM; ++mm) m_run[mm][0] = m_run[mm][1] = -INFINITY, l_run[mm][0] = l_run[mm][1] = 0.0f;
  const int warp_pos0 = pos0 + kWarpRows * warp;  // the position of the warp's first row

  for (int t = 0; t < num_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < num_tiles) {
      load_tile(t + 1, buf ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint32_t kb = k_addr + buf * L::kKBuffer, vb = v_addr + buf * L::kVBuffer;

    // 2. S = Q K^T: one ldmatrix.x4 gives b0, b1 of two n8 key tiles for one k16 step.
    float s[kM][kKeys / 8][4];
#pragma unroll
    for (int mm = 0; mm < kM; ++mm)
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) s[mm][n][0] = s[mm][n][1] = s[mm][n][2] = s[mm][n][3] = 0.0f;
    const int k_lane_key = lane % 8 + (lane / 16) * 8, k_lane_chunk = (lane / 8) % 2;
#pragma unroll
    for (int ks = 0; ks < kQk / 16; ++ks) {
      uint32_t a[kM][4];
      if constexpr (kM == 1) {
#pragma unroll
        for (int x = 0; x < 4; ++x) a[0][x] = qf[ks][x];
      } else {
#pragma unroll
        for (int mm = 0; mm < kM; ++mm)
          ldmatrix_x4(a[mm], q_addr + swizzled(a_row + 16 * mm, kQkBytes, 2 * ks + lane / 16));
      }
#pragma unroll
      for (int np = 0; np < kKeys / 16; ++np) {
        uint32_t b[4];
        ldmatrix_x4(b, kb + swizzled(16 * np + k_lane_key, kQkBytes, 2 * ks + k_lane_chunk));
#pragma unroll
        for (int mm = 0; mm < kM; ++mm) {
          mma_bf16(s[mm][2 * np], a[mm], b[0], b[1]);
          mma_bf16(s[mm][2 * np + 1], a[mm], b[2], b[3]);
        }
      }
    }

    // 3. Mask and online softmax (rows g and g + 8 of each of the warp's m tiles).
    const int kbase = t * kKeys;
    if (kbase + kKeys - 1 > warp_pos0) {
#pragma unroll
      for (int mm = 0; mm < kM; ++mm)
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = kbase + 8 * n + 2 * c + (e & 1), pos = warp_pos0 + 16 * mm + g + (e >> 1) * 8;
            if (key > pos) s[mm][n][e] = -INFINITY;
          }
    }
#pragma unroll
    for (int mm = 0; mm < kM; ++mm) {
      float corr[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) mx = fmaxf(mx, fmaxf(s[mm][n][2 * half], s[mm][n][2 * half + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[mm][half], mx * scale_log2);
        corr[half] = exp2f(m_run[mm][half] - m_new);
        m_run[mm][half] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) {
          s[mm][n][2 * half] = exp2f(fmaf(s[mm][n][2 * half], scale_log2, -m_new));
          s[mm][n][2 * half + 1] = exp2f(fmaf(s[mm][n][2 * half + 1], scale_log2, -m_new));
          sum += s[mm][n][2 * half] + s[mm][n][2 * half + 1];
        }
        l_run[mm][half] = l_run[mm][half] * corr[half] + sum;
      }
#pragma unroll
      for (int n = 0; n < kV / 8; ++n) {
        o[mm][n][0] *= corr[0];
        o[mm][n][1] *= corr[0];
        o[mm][n][2] *= corr[1];
        o[mm][n][3] *= corr[1];
      }
    }

    // 4. O += P V: P's A fragment of keys [16 kk, + 16) is S's n8 tiles 2 kk and 2 kk + 1.
    const int v_lane_key = lane % 8 + ((lane / 8) % 2) * 8, v_lane_chunk = lane / 16;
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t a[kM][4];
#pragma unroll
      for (int mm = 0; mm < kM; ++mm) {
        a[mm][0] = pack_bf16x2(s[mm][2 * kk][0], s[mm][2 * kk][1]);
        a[mm][1] = pack_bf16x2(s[mm][2 * kk][2], s[mm][2 * kk][3]);
        a[mm][2] = pack_bf16x2(s[mm][2 * kk + 1][0], s[mm][2 * kk + 1][1]);
        a[mm][3] = pack_bf16x2(s[mm][2 * kk + 1][2], s[mm][2 * kk + 1][3]);
      }
#pragma unroll
      for (int np = 0; np < kV / 16; ++np) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, vb + swizzled(16 * kk + v_lane_key, kVBytes, 2 * np + v_lane_chunk));
#pragma unroll
        for (int mm = 0; mm < kM; ++mm) {
          mma_bf16(o[mm][2 * np], a[mm], b[0], b[1]);
          mma_bf16(o[mm][2 * np + 1], a[mm], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // everyone is done with `buf` before tile t + 2 lands in it
  }

#pragma unroll
  for (int mm = 0; mm < kM; ++mm)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float l = l_run[mm][half];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int r = kWarpRows * warp + 16 * mm + g + 8 * half;
      if (r >= num_rows) continue;
      const float inv = 1.0f / l;
      float* dst = out + (int64_t(token0 + r) * num_heads + h) * kV + 2 * c;
#pragma unroll
      for (int n = 0; n < kV / 8; ++n)
        *reinterpret_cast<float2*>(dst + 8 * n) =
            make_float2(o[mm][n][2 * half] * inv, o[mm][n][2 * half + 1] * inv);
    }
}

template <int kM, int kKeys>
cudaError_t launch_variant(const float* q, const uint16_t* kv, const uint16_t* k_pe, const int32_t* tiles,
                           int64_t num_tiles, int64_t num_heads, float scale, float* out, cudaStream_t stream) {
  auto* kernel = mla_prefill_mma_kernel<kM, kKeys>;
  // Set at each launch: the attribute belongs to the current device (a process may drive several).
  if (const cudaError_t attr =
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Smem<kM, kKeys>::kBytes);
      attr != cudaSuccess)
    return attr;
  // Two CTAs an SM need all of shared memory, whatever the decode steps prefer (smem_carveout.hpp).
  return launch_dependent_needing(SmemNeed::full, kernel, dim3(unsigned(num_tiles), unsigned(num_heads)),
                                  dim3(kThreads), size_t(Smem<kM, kKeys>::kBytes), stream, q,
                                  reinterpret_cast<const __nv_bfloat16*>(kv),
                                  reinterpret_cast<const __nv_bfloat16*>(k_pe), tiles, int(num_heads),
                                  scale * kLog2e, out);
}

}  // namespace

bool mla_prefill_mma_supports(int64_t nope, int64_t rope, int64_t v_dim) {
  return nope == kNope && rope == kRope && v_dim == kV;
}

cudaError_t launch_mla_prefill_mma(const float* q, const uint16_t* kv, const uint16_t* k_pe, const int32_t* tiles,
                                   int64_t num_tiles, int64_t tile_rows, int64_t num_heads, int64_t nope, int64_t rope,
                                   int64_t v_dim, float scale, float* out, cudaStream_t stream) {
  if (num_tiles == 0) return cudaSuccess;
  if (!mla_prefill_mma_supports(nope, rope, v_dim) || (tile_rows != 64 && tile_rows != 128) || num_tiles < 0 ||
      num_tiles > INT32_MAX || num_heads <= 0 || num_heads > 65535 || !q || !kv || !k_pe || !tiles || !out)
    return cudaErrorInvalidValue;
  return tile_rows == 64 ? launch_variant<1, 64>(q, kv, k_pe, tiles, num_tiles, num_heads, scale, out, stream)
                         : launch_variant<2, 32>(q, kv, k_pe, tiles, num_tiles, num_heads, scale, out, stream);
}

}  // namespace troupe::kernels
