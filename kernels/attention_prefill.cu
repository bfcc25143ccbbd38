#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <mma.h>

#include <algorithm>
#include <cmath>

#include "kernels/attention_prefill.hpp"

namespace troupe::kernels {
namespace {

using namespace nvcuda;

constexpr int kKeys = int(kPrefillTileKeys);
constexpr float kLog2e = 1.4426950408889634f;

// Query rows per tile: 128 (8 warps), 64 (4 warps) for head_dim 256 so shared memory fits.
constexpr int tile_rows(int64_t head_dim) { return head_dim > 128 ? 64 : 128; }

// Shared memory of one block, byte offsets (all multiples of 128). Leading dimensions are padded
// off multiples of 32 banks; WMMA wants bf16 ld % 8 == 0, fp32 ld % 4 == 0, 32-byte aligned tiles.
template <int D>
struct PrefillSmem {
  static constexpr int kRows = tile_rows(D);
  static constexpr int kWarps = kRows / 16;  // each warp owns 16 query rows
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kLdKv = D + 8;     // bf16 K / V / staged Q rows
  static constexpr int kLdS = kKeys + 4;  // fp32 scores
  static constexpr int kLdP = kKeys + 8;  // bf16 probabilities
  static constexpr int kLdO = D + 4;      // fp32 output accumulator
  static constexpr size_t kK = 0;         // [kKeys, kLdKv] bf16; K and V hold Q [kRows, kLdKv] at the start
  static constexpr size_t kV = kK + size_t(kKeys) * kLdKv * 2;
  static constexpr size_t kS = kV + size_t(kKeys) * kLdKv * 2;  // [kRows, kLdS] f32
  static constexpr size_t kP = kS + size_t(kRows) * kLdS * 4;   // [kRows, kLdP] bf16
  static constexpr size_t kO = kP + size_t(kRows) * kLdP * 2;   // [kRows, kLdO] f32
  static constexpr size_t kBytes = kO + size_t(kRows) * kLdO * 4;
  static_assert(kRows <= 2 * kKeys, "Q is staged in the K and V buffers");
  static_assert(kK % 128 == 0 && kV % 128 == 0 && kS % 128 == 0 && kP % 128 == 0 && kO % 128 == 0);
  static_assert(kBytes <= 227 * 1024, "more shared memory than one block may have");
  // float4 loads per thread for one K (or V) tile; prefetched into registers when few enough.
  static constexpr int kLoadIters = kKeys * (D / 4) / kThreads;
  static constexpr bool kPrefetch = kLoadIters <= 8;
  static_assert(kKeys * (D / 4) % kThreads == 0 && kRows * (D / 4) % kThreads == 0);
};

// Four floats as bf16 into shared memory (8-byte aligned destination).
__device__ __forceinline__ void store_bf16x4(__nv_bfloat16* dst, float4 v) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 bits;
  bits.x = *reinterpret_cast<uint32_t*>(&lo);
  bits.y = *reinterpret_cast<uint32_t*>(&hi);
  *reinterpret_cast<uint2*>(dst) = bits;
}

// Four cache elements in registers on their way to shared memory: fp32 (rounded to bf16 when
// stored), bf16 bits (copied as they are) or e4m3 bytes (widened to bf16 exactly when stored: every
// e4m3 is a bf16; the fp8 cache's scales are folded in by the launcher).
template <typename CacheT>
struct KvChunk;
template <>
struct KvChunk<float> {
  using Type = float4;
};
template <>
struct KvChunk<__nv_bfloat16> {
  using Type = uint2;
};
template <>
struct KvChunk<__nv_fp8_e4m3> {
  using Type = uint32_t;
};

__device__ __forceinline__ float4 load_chunk(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ uint2 load_chunk(const __nv_bfloat16* p) { return __ldg(reinterpret_cast<const uint2*>(p)); }
__device__ __forceinline__ void store_chunk(__nv_bfloat16* dst, float4 v) { store_bf16x4(dst, v); }
__device__ __forceinline__ void store_chunk(__nv_bfloat16* dst, uint2 v) { *reinterpret_cast<uint2*>(dst) = v; }
__device__ __forceinline__ uint32_t load_chunk(const __nv_fp8_e4m3* p) {
  return __ldg(reinterpret_cast<const unsigned int*>(p));  // p[0] in the low byte
}
__device__ __forceinline__ float e4m3_to_float(uint32_t byte) {
  __nv_fp8_e4m3 v;
  v.__x = __nv_fp8_storage_t(byte & 0xffu);
  return static_cast<float>(v);
}
__device__ __forceinline__ void store_chunk(__nv_bfloat16* dst, uint32_t v) {
  store_bf16x4(dst, make_float4(e4m3_to_float(v), e4m3_to_float(v >> 8), e4m3_to_float(v >> 16),
                                e4m3_to_float(v >> 24)));
}

// One K/V tile's chunks of this thread: key (i / (D / 4)), column (i % (D / 4)) * 4 for
// i = threadIdx.x + it * kThreads; zero past num_keys.
template <int D, typename CacheT, typename Chunk = typename KvChunk<CacheT>::Type>
__device__ __forceinline__ void load_kv(const CacheT* __restrict__ k_cache, const CacheT* __restrict__ v_cache,
                                        const int32_t* __restrict__ table, int block_size, int num_kv_heads,
                                        int kv_head, int kv0, int num_keys, int it, Chunk& k, Chunk& v) {
  using L = PrefillSmem<D>;
  const int i = threadIdx.x + it * L::kThreads;
  const int key = i / (D / 4), c = (i % (D / 4)) * 4, j = kv0 + key;
  k = Chunk{};
  v = Chunk{};
  if (j < num_keys) {
    const int64_t slot = int64_t(table[j / block_size]) * block_size + j % block_size;
    const int64_t offset = (slot * num_kv_heads + kv_head) * D + c;
    k = load_chunk(k_cache + offset);
    v = load_chunk(v_cache + offset);
  }
}

template <int D, typename Chunk>
__device__ __forceinline__ void store_kv(__nv_bfloat16* k_s, __nv_bfloat16* v_s, int it, Chunk k, Chunk v) {
  using L = PrefillSmem<D>;
  const int i = threadIdx.x + it * L::kThreads;
  const int key = i / (D / 4), c = (i % (D / 4)) * 4;
  store_chunk(k_s + key * L::kLdKv + c, k);
  store_chunk(v_s + key * L::kLdKv + c, v);
}

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// cp.async (sm_80+): 16 bytes global -> shared without registers; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Starts copying one K/V tile from a bf16 cache into k_s / v_s: 16-byte chunks (8 elements),
// chunk i = threadIdx.x + it * kThreads is key i / (D / 8), column (i % (D / 8)) * 8; keys past
// num_keys are zero-filled. Needs 16-byte aligned cache rows (D % 8 == 0, 16-byte aligned bases).
template <int D>
__device__ __forceinline__ void copy_kv_async(const __nv_bfloat16* __restrict__ k_cache,
                                              const __nv_bfloat16* __restrict__ v_cache,
                                              const int32_t* __restrict__ table, int block_size, int num_kv_heads,
                                              int kv_head, int kv0, int num_keys, __nv_bfloat16* k_s,
                                              __nv_bfloat16* v_s) {
  using L = PrefillSmem<D>;
  constexpr int kChunks = D / 8;  // per row
  static_assert(kKeys * kChunks % L::kThreads == 0);
#pragma unroll
  for (int it = 0; it < kKeys * kChunks / L::kThreads; ++it) {
    const int i = threadIdx.x + it * L::kThreads;
    const int key = i / kChunks, c = (i % kChunks) * 8, j = kv0 + key;
    int64_t offset = 0;  // a valid address even when nothing is read
    if (j < num_keys) {
      const int64_t slot = int64_t(table[j / block_size]) * block_size + j % block_size;
      offset = (slot * num_kv_heads + kv_head) * D + c;
    }
    const int bytes = j < num_keys ? 16 : 0;
    cp_async16(smem_address(k_s + key * L::kLdKv + c), k_cache + offset, bytes);
    cp_async16(smem_address(v_s + key * L::kLdKv + c), v_cache + offset, bytes);
  }
}

template <int D, typename CacheT>
__global__ void __launch_bounds__(PrefillSmem<D>::kThreads)
    prefill_attention_kernel(const float* __restrict__ q, const CacheT* __restrict__ k_cache,
                             const CacheT* __restrict__ v_cache, const int32_t* __restrict__ positions,
                             const int32_t* __restrict__ tiles, const int32_t* __restrict__ block_tables,
                             int max_blocks, int block_size, int num_heads, int num_kv_heads, float scale_log2,
                             float out_scale, float* __restrict__ out) {
  using L = PrefillSmem<D>;
  constexpr int kVecs = D / 4;  // float4 per row
  constexpr int kRows = L::kRows, kThreads = L::kThreads;
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem + L::kK);
  __nv_bfloat16* v_s = reinterpret_cast<__nv_bfloat16*>(smem + L::kV);
  float* s_s = reinterpret_cast<float*>(smem + L::kS);
  __nv_bfloat16* p_s = reinterpret_cast<__nv_bfloat16*>(smem + L::kP);
  float* o_s = reinterpret_cast<float*>(smem + L::kO);

  const int group = num_heads / num_kv_heads;
  const int kv_head = blockIdx.y;
  const int token_begin = tiles[3 * blockIdx.x], token_end = tiles[3 * blockIdx.x + 1];
  const int32_t* table = block_tables + int64_t(tiles[3 * blockIdx.x + 2]) * max_blocks;
  const int num_rows = (token_end - token_begin) * group;  // <= kRows
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const int num_keys = positions[token_end - 1] + 1;  // the last token sees the most keys
  // The first K/V tile's loads start before the Q staging.
  using Chunk = typename KvChunk<CacheT>::Type;
  Chunk k_next[L::kPrefetch ? L::kLoadIters : 1], v_next[L::kPrefetch ? L::kLoadIters : 1];
  if constexpr (L::kPrefetch) {
#pragma unroll
    for (int it = 0; it < L::kLoadIters; ++it)
      load_kv<D>(k_cache, v_cache, table, block_size, num_kv_heads, kv_head, 0, num_keys, it, k_next[it], v_next[it]);
  }

  // Q tile, rounded to bf16, staged in the K and V buffers; padding rows are zero.
#pragma unroll 8
  for (int it = 0; it < kRows * kVecs / kThreads; ++it) {
    const int i = threadIdx.x + it * kThreads;
    const int r = i / kVecs, c = (i % kVecs) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < num_rows) {
      const int64_t t = token_begin + r / group;
      const int64_t h = int64_t(kv_head) * group + r % group;
      v = __ldg(reinterpret_cast<const float4*>(q + (t * num_heads + h) * D + c));
    }
    store_bf16x4(k_s + r * L::kLdKv + c, v);
  }
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> q_frag[D / 16];
#pragma unroll
  for (int d = 0; d < D / 16; ++d) wmma::load_matrix_sync(q_frag[d], k_s + warp * 16 * L::kLdKv + d * 16, L::kLdKv);

  // Softmax state: lanes 2r and 2r + 1 share row warp * 16 + r, each taking half of its columns.
  const int row = warp * 16 + lane / 2, half = lane % 2;
  const int row_pos = row < num_rows ? positions[token_begin + row / group] : -1;  // -1: padding row
  int warp_pos = row_pos;  // the largest position among the warp's rows
  for (int o = 16; o > 0; o /= 2) warp_pos = max(warp_pos, __shfl_xor_sync(0xffffffffu, warp_pos, o));
  float m = -INFINITY, l = 0.0f;  // running max (log2 domain) and sum of the row
  float* o_row = o_s + row * L::kLdO;
  for (int c = half; c < D; c += 2) o_row[c] = 0.0f;

  for (int kv0 = 0; kv0 < num_keys; kv0 += kKeys) {
    __syncthreads();  // the previous tile's K/V (and the staged Q) are no longer read
    if constexpr (L::kPrefetch) {
      // Store the prefetched tile, then start loading the next one: its loads fly during the math.
#pragma unroll
      for (int it = 0; it < L::kLoadIters; ++it) store_kv<D>(k_s, v_s, it, k_next[it], v_next[it]);
      if (kv0 + kKeys < num_keys) {
#pragma unroll
        for (int it = 0; it < L::kLoadIters; ++it)
          load_kv<D>(k_cache, v_cache, table, block_size, num_kv_heads, kv_head, kv0 + kKeys, num_keys, it,
                     k_next[it], v_next[it]);
      }
    } else {
#pragma unroll 8
      for (int it = 0; it < L::kLoadIters; ++it) {
        Chunk k, v;
        load_kv<D>(k_cache, v_cache, table, block_size, num_kv_heads, kv_head, kv0, num_keys, it, k, v);
        store_kv<D>(k_s, v_s, it, k, v);
      }
    }
    __syncthreads();
    if (warp_pos < kv0) continue;  // every row of this warp is masked for this tile (no barrier below)

    // S = Q K^T for the warp's 16 rows: [16, kKeys] fp32 into shared memory.
#pragma unroll
    for (int n = 0; n < kKeys / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag;
      wmma::fill_fragment(s_frag, 0.0f);
#pragma unroll
      for (int d = 0; d < D / 16; ++d) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> k_frag;
        wmma::load_matrix_sync(k_frag, k_s + n * 16 * L::kLdKv + d * 16, L::kLdKv);
        wmma::mma_sync(s_frag, q_frag[d], k_frag, s_frag);
      }
      wmma::store_matrix_sync(s_s + warp * 16 * L::kLdS + n * 16, s_frag, L::kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax on the row: column pairs 2 * (half + 2 k), masked where key > position.
    const float* s_row = s_s + row * L::kLdS;
    __nv_bfloat16* p_row = p_s + row * L::kLdP;
    float scores[kKeys / 2];
    float tile_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < kKeys / 4; ++k) {
      const int c = 2 * (half + 2 * k);
      const float2 s2 = *reinterpret_cast<const float2*>(s_row + c);
      scores[2 * k] = kv0 + c <= row_pos ? s2.x * scale_log2 : -INFINITY;
      scores[2 * k + 1] = kv0 + c + 1 <= row_pos ? s2.y * scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, fmaxf(scores[2 * k], scores[2 * k + 1]));
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // fully masked so far: p = 0, no NaN
    const float alpha = exp2f(m - m_use);
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < kKeys / 4; ++k) {
      const int c = 2 * (half + 2 * k);
      const float p0 = exp2f(scores[2 * k] - m_use), p1 = exp2f(scores[2 * k + 1] - m_use);
      sum += p0 + p1;
      *reinterpret_cast<__nv_bfloat162*>(p_row + c) = __floats2bfloat162_rn(p0, p1);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    if (alpha != 1.0f)
      for (int c = half; c < D; c += 2) o_row[c] *= alpha;
    __syncwarp();

    // O += P V for the warp's rows, accumulating into the fp32 copy in shared memory.
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> p_frag[kKeys / 16];
#pragma unroll
    for (int k = 0; k < kKeys / 16; ++k) wmma::load_matrix_sync(p_frag[k], p_s + warp * 16 * L::kLdP + k * 16, L::kLdP);
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
      float* o_tile = o_s + warp * 16 * L::kLdO + n * 16;
      wmma::load_matrix_sync(o_frag, o_tile, L::kLdO, wmma::mem_row_major);
#pragma unroll
      for (int k = 0; k < kKeys / 16; ++k) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> v_frag;
        wmma::load_matrix_sync(v_frag, v_s + k * 16 * L::kLdKv + n * 16, L::kLdKv);
        wmma::mma_sync(o_frag, p_frag[k], v_frag, o_frag);
      }
      wmma::store_matrix_sync(o_tile, o_frag, L::kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncwarp();

  // out = O / l, one row at a time across the warp.
  for (int r = 0; r < 16; ++r) {
    const float row_sum = __shfl_sync(0xffffffffu, l, 2 * r);
    const int gr = warp * 16 + r;
    if (gr >= num_rows) break;
    const int64_t t = token_begin + gr / group;
    const int64_t h = int64_t(kv_head) * group + gr % group;
    const float inv = out_scale / row_sum;  // out_scale: an fp8 cache's v_scale, else 1
    float* dst = out + (t * num_heads + h) * D;
    for (int c = lane; c < D; c += 32) dst[c] = o_s[gr * L::kLdO + c] * inv;
  }
}

// ---- Register-resident kernel (head_dim 32, 64, 128): S, P and O never leave registers ----
// mma.sync m16n8k16 (bf16 in, fp32 accumulate) fragments, PTX ISA layouts; g = lane / 4,
// c = lane % 4. A (16x16): a[0] = (row g, cols 2c..2c+1), a[1] = (g + 8, 2c..), a[2] = (g, 2c + 8..),
// a[3] = (g + 8, 2c + 8..). B (16x8): b[0] = (k 2c..2c+1, col g), b[1] = (k 2c + 8.., g).
// C (16x8 f32): c[0..1] = (row g, cols 2c, 2c + 1), c[2..3] = (row g + 8, same cols).
// The C fragments of two adjacent n8 tiles of S, rounded to bf16, are the A fragment of P for the
// matching 16 keys, so P goes straight from the softmax into O += P V.

// Four 8x8 bf16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i gets
// (row lane / 4, cols 2 (lane % 4)..+1) of it, or with .trans (rows 2 (lane % 4)..+1, col lane / 4).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}

// c += a b for one 16x8x16 step.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one bf16x2 register, lo in the low half (the lower column of a fragment).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Same work unit, tile rows, K/V staging and Q staging as prefill_attention_kernel; only K and V
// stay in shared memory (34 KiB at head_dim 128). With a bf16 cache the K/V tiles are double
// buffered (68 KiB at head_dim 128) and filled by cp.async: tile i + 1 is copied while tile i is
// multiplied, and Q is staged in the second buffer. With an fp32 cache the next tile waits in
// registers (rounded to bf16 when stored). Each warp holds its Q rows as A fragments, its
// S tile (16 x kKeys) and its O rows (16 x D) as fp32 C fragments; the running max and sum are per
// (thread, row), the sum a partial over the thread's columns, reduced over the quad at the end.
template <int D, typename CacheT>
__global__ void __launch_bounds__(PrefillSmem<D>::kThreads, 1)
    prefill_attention_mma_kernel(const float* __restrict__ q, const CacheT* __restrict__ k_cache,
                                 const CacheT* __restrict__ v_cache, const int32_t* __restrict__ positions,
                                 const int32_t* __restrict__ tiles, const int32_t* __restrict__ block_tables,
                                 int max_blocks, int block_size, int num_heads, int num_kv_heads, float scale_log2,
                                 float out_scale, float* __restrict__ out) {
  using L = PrefillSmem<D>;
  static_assert(L::kRows == 128 && L::kThreads == 256 && D % 32 == 0, "8 warps of 16 rows, D in 32-column steps");
  constexpr int kVecs = D / 4;         // float4 per row
  constexpr int kSTiles = kKeys / 8;   // n8 tiles of S
  constexpr int kOTiles = D / 8;       // n8 tiles of O
  constexpr int kRows = L::kRows, kThreads = L::kThreads;
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem + L::kK);
  __nv_bfloat16* v_s = reinterpret_cast<__nv_bfloat16*>(smem + L::kV);

  const int group = num_heads / num_kv_heads;
  const int kv_head = blockIdx.y;
  const int token_begin = tiles[3 * blockIdx.x], token_end = tiles[3 * blockIdx.x + 1];
  const int32_t* table = block_tables + int64_t(tiles[3 * blockIdx.x + 2]) * max_blocks;
  const int num_rows = (token_end - token_begin) * group;  // <= kRows
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c = lane % 4;

  constexpr bool kAsync = sizeof(CacheT) == 2;        // bf16 cache: cp.async into two K/V buffers
  constexpr uint32_t kBufferBytes = uint32_t(L::kS);  // one K + V buffer
  const int num_keys = positions[token_end - 1] + 1;  // the last token sees the most keys
  using Chunk = typename KvChunk<CacheT>::Type;
  Chunk k_next[kAsync ? 1 : L::kLoadIters], v_next[kAsync ? 1 : L::kLoadIters];
  static_assert(L::kPrefetch, "the whole next K/V tile fits in registers");
  if constexpr (kAsync) {
    copy_kv_async<D>(k_cache, v_cache, table, block_size, num_kv_heads, kv_head, 0, num_keys, k_s, v_s);
    cp_async_commit();
  } else {
#pragma unroll
    for (int it = 0; it < L::kLoadIters; ++it)
      load_kv<D>(k_cache, v_cache, table, block_size, num_kv_heads, kv_head, 0, num_keys, it, k_next[it], v_next[it]);
  }

  // Q tile, rounded to bf16, staged in a K and V buffer (the second one while cp.async fills the
  // first); padding rows are zero.
  __nv_bfloat16* q_s = reinterpret_cast<__nv_bfloat16*>(smem + (kAsync ? kBufferBytes : 0));
#pragma unroll 8
  for (int it = 0; it < kRows * kVecs / kThreads; ++it) {
    const int i = threadIdx.x + it * kThreads;
    const int r = i / kVecs, col = (i % kVecs) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < num_rows) {
      const int64_t t = token_begin + r / group;
      const int64_t h = int64_t(kv_head) * group + r % group;
      v = __ldg(reinterpret_cast<const float4*>(q + (t * num_heads + h) * D + col));
    }
    store_bf16x4(q_s + r * L::kLdKv + col, v);
  }
  __syncthreads();
  // A fragments of the warp's 16 rows: lane l addresses row l % 16, column 8 (l / 16) of each step.
  uint32_t q_frag[D / 16][4];
  const uint32_t q_base = smem_address(q_s + (warp * 16 + lane % 16) * L::kLdKv + 8 * (lane / 16));
#pragma unroll
  for (int d = 0; d < D / 16; ++d) ldmatrix_x4(q_frag[d], q_base + d * 16 * 2);

  // Rows g and g + 8 of the warp; position -1 marks a padding row (every key masked).
  int row_pos[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = warp * 16 + g + 8 * i;
    row_pos[i] = r < num_rows ? positions[token_begin + r / group] : -1;
  }
  int warp_max = max(row_pos[0], row_pos[1]), warp_min = min(row_pos[0], row_pos[1]);
  for (int o = 16; o > 0; o /= 2) {
    warp_max = max(warp_max, __shfl_xor_sync(0xffffffffu, warp_max, o));
    warp_min = min(warp_min, __shfl_xor_sync(0xffffffffu, warp_min, o));
  }
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // running max (log2 domain), partial sum
  float o_acc[kOTiles][4];
#pragma unroll
  for (int j = 0; j < kOTiles; ++j) o_acc[j][0] = o_acc[j][1] = o_acc[j][2] = o_acc[j][3] = 0.0f;

  // K (B of S = Q K^T, keys as columns): lane l addresses key l % 8, column 8 (l / 8), so one x4
  // covers 8 keys x 32 columns = two k16 steps. V (B of O += P V, .trans): lane l addresses key
  // l % 8 + 8 ((l / 8) % 2), column 8 (l / 16), so one x4 covers 16 keys x 16 columns = two n8 tiles.
  const uint32_t k_base = smem_address(k_s + (lane % 8) * L::kLdKv + 8 * (lane / 8));
  const uint32_t v_base = smem_address(v_s + (lane % 8 + 8 * ((lane / 8) % 2)) * L::kLdKv + 8 * (lane / 16));

  uint32_t buffer = 0;  // byte offset of the K/V buffer holding the current tile
  for (int kv0 = 0; kv0 < num_keys; kv0 += kKeys) {
    __syncthreads();  // the previous tile's K/V (and the staged Q) are no longer read
    if constexpr (kAsync) {
      // Start the next tile into the other buffer, then wait for this tile's copies.
      const uint32_t next = kBufferBytes - buffer;
      if (kv0 + kKeys < num_keys)
        copy_kv_async<D>(k_cache, v_cache, table, block_size, num_kv_heads, kv_head, kv0 + kKeys, num_keys,
                         reinterpret_cast<__nv_bfloat16*>(smem + next + L::kK),
                         reinterpret_cast<__nv_bfloat16*>(smem + next + L::kV));
      cp_async_commit();  // possibly empty: the wait leaves only the newest group in flight
      cp_async_wait<1>();
    } else {
#pragma unroll
      for (int it = 0; it < L::kLoadIters; ++it) store_kv<D>(k_s, v_s, it, k_next[it], v_next[it]);
      if (kv0 + kKeys < num_keys) {
#pragma unroll
        for (int it = 0; it < L::kLoadIters; ++it)
          load_kv<D>(k_cache, v_cache, table, block_size, num_kv_heads, kv_head, kv0 + kKeys, num_keys, it,
                     k_next[it], v_next[it]);
      }
    }
    __syncthreads();
    const uint32_t tile_k = k_base + buffer, tile_v = v_base + buffer;
    if constexpr (kAsync) buffer = kBufferBytes - buffer;
    if (warp_max < kv0) continue;  // every row of this warp is masked for this tile (no barrier below)

    // S = Q K^T: [16, kKeys] in C fragments.
    float s[kSTiles][4];
#pragma unroll
    for (int n = 0; n < kSTiles; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int d = 0; d < D / 32; ++d) {
        uint32_t kf[4];
        ldmatrix_x4(kf, tile_k + (n * 8 * L::kLdKv + d * 32) * 2);
        mma_bf16(s[n], q_frag[2 * d], kf[0], kf[1]);
        mma_bf16(s[n], q_frag[2 * d + 1], kf[2], kf[3]);
      }
    }

    // Scale to the log2 domain; mask key > position only on tiles that reach past a row's position.
    const bool masked = kv0 + kKeys - 1 > warp_min;
#pragma unroll
    for (int n = 0; n < kSTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kv0 + n * 8 + 2 * c + (e & 1);
        s[n][e] = masked && key > row_pos[e / 2] ? -INFINITY : s[n][e] * scale_log2;
      }
    }
    // Online softmax per row: the quad (lanes 4g..4g+3) holds the row's kKeys scores.
    float m_use[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float mx = m[i];
#pragma unroll
      for (int n = 0; n < kSTiles; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * i], s[n][2 * i + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      m_use[i] = mx == -INFINITY ? 0.0f : mx;  // fully masked so far: p = 0, no NaN
      const float alpha = exp2f(m[i] - m_use[i]);
      m[i] = mx;
      l[i] *= alpha;
#pragma unroll
      for (int j = 0; j < kOTiles; ++j) {
        o_acc[j][2 * i] *= alpha;
        o_acc[j][2 * i + 1] *= alpha;
      }
    }
#pragma unroll
    for (int n = 0; n < kSTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = exp2f(s[n][e] - m_use[e / 2]);
        l[e / 2] += s[n][e];
      }
    }

    // O += P V, 16 keys per step; P's A fragment comes from S tiles 2 kk and 2 kk + 1.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t p_frag[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]), pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                                  pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int j = 0; j < D / 16; ++j) {
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, tile_v + (kk * 16 * L::kLdKv + j * 16) * 2);
        mma_bf16(o_acc[2 * j], p_frag, vf[0], vf[1]);
        mma_bf16(o_acc[2 * j + 1], p_frag, vf[2], vf[3]);
      }
    }
  }

  if constexpr (kAsync) cp_async_wait<0>();  // only the last, empty group can be pending
  // out = O / l: the quad's partial sums add up to the row's; float2 stores of the C fragments.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float row_sum = l[i];
    row_sum += __shfl_xor_sync(0xffffffffu, row_sum, 1);
    row_sum += __shfl_xor_sync(0xffffffffu, row_sum, 2);
    const int r = warp * 16 + g + 8 * i;
    if (r >= num_rows) continue;
    const int64_t t = token_begin + r / group;
    const int64_t h = int64_t(kv_head) * group + r % group;
    const float inv = out_scale / row_sum;  // out_scale: an fp8 cache's v_scale, else 1
    float* dst = out + (t * num_heads + h) * D + 2 * c;
#pragma unroll
    for (int j = 0; j < kOTiles; ++j)
      *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o_acc[j][2 * i] * inv, o_acc[j][2 * i + 1] * inv);
  }
}

template <int D, typename CacheT>
cudaError_t launch(const float* q, const CacheT* k_cache, const CacheT* v_cache, const int32_t* positions,
                   const int32_t* tiles, int64_t num_tiles, const int32_t* block_tables, int64_t max_blocks,
                   int64_t block_size, int64_t num_heads, int64_t num_kv_heads, float scale, float out_scale,
                   float* out, cudaStream_t stream) {
  // Register-resident kernel where its fragments fit (K and V only in shared memory; two buffers of
  // them with a bf16 cache), else the shared-memory WMMA kernel.
  constexpr bool kMma = D == 32 || D == 64 || D == 128;
  constexpr size_t kKvBuffers = sizeof(CacheT) == 2 ? 2 : 1;
  constexpr size_t kSmem = kMma ? kKvBuffers * PrefillSmem<D>::kS : PrefillSmem<D>::kBytes;
  static_assert(kSmem <= 227 * 1024, "more shared memory than one block may have");
  constexpr int kThreads = PrefillSmem<D>::kThreads;
  auto* kernel = prefill_attention_kernel<D, CacheT>;
  if constexpr (kMma) kernel = prefill_attention_mma_kernel<D, CacheT>;
  // Opt in to more than 48 KiB of dynamic shared memory (per device, so on every launch).
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem));
      err != cudaSuccess)
    return err;
  const dim3 grid(static_cast<unsigned>(num_tiles), static_cast<unsigned>(num_kv_heads));
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
  if (num_tiles < 0 || num_tiles > INT32_MAX || num_kv_heads <= 0 || num_kv_heads > 65535 ||
      num_heads % num_kv_heads != 0 || block_size <= 0 || max_blocks <= 0 ||
      !prefill_attention_supports(head_dim, num_heads / num_kv_heads))
    return cudaErrorInvalidValue;
  // The vector loads and cp.async need 16-byte aligned cache bases (cudaMalloc gives 256 bytes).
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
