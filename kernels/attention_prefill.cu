#include <cuda_bf16.h>
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

// One K/V tile's float4s of this thread: key (i / (D / 4)), column (i % (D / 4)) * 4 for
// i = threadIdx.x + it * kThreads; zero past num_keys.
template <int D>
__device__ __forceinline__ void load_kv(const float* __restrict__ k_cache, const float* __restrict__ v_cache,
                                        const int32_t* __restrict__ table, int block_size, int num_kv_heads,
                                        int kv_head, int kv0, int num_keys, int it, float4& k, float4& v) {
  using L = PrefillSmem<D>;
  const int i = threadIdx.x + it * L::kThreads;
  const int key = i / (D / 4), c = (i % (D / 4)) * 4, j = kv0 + key;
  k = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  v = k;
  if (j < num_keys) {
    const int64_t slot = int64_t(table[j / block_size]) * block_size + j % block_size;
    const int64_t offset = (slot * num_kv_heads + kv_head) * D + c;
    k = __ldg(reinterpret_cast<const float4*>(k_cache + offset));
    v = __ldg(reinterpret_cast<const float4*>(v_cache + offset));
  }
}

template <int D>
__device__ __forceinline__ void store_kv(__nv_bfloat16* k_s, __nv_bfloat16* v_s, int it, float4 k, float4 v) {
  using L = PrefillSmem<D>;
  const int i = threadIdx.x + it * L::kThreads;
  const int key = i / (D / 4), c = (i % (D / 4)) * 4;
  store_bf16x4(k_s + key * L::kLdKv + c, k);
  store_bf16x4(v_s + key * L::kLdKv + c, v);
}

template <int D>
__global__ void __launch_bounds__(PrefillSmem<D>::kThreads)
    prefill_attention_kernel(const float* __restrict__ q, const float* __restrict__ k_cache,
                             const float* __restrict__ v_cache, const int32_t* __restrict__ positions,
                             const int32_t* __restrict__ tiles, const int32_t* __restrict__ block_tables,
                             int max_blocks, int block_size, int num_heads, int num_kv_heads, float scale_log2,
                             float* __restrict__ out) {
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
  float4 k_next[L::kPrefetch ? L::kLoadIters : 1], v_next[L::kPrefetch ? L::kLoadIters : 1];
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
        float4 k, v;
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
    const float inv = 1.0f / row_sum;
    float* dst = out + (t * num_heads + h) * D;
    for (int c = lane; c < D; c += 32) dst[c] = o_s[gr * L::kLdO + c] * inv;
  }
}

template <int D>
cudaError_t launch(const float* q, const float* k_cache, const float* v_cache, const int32_t* positions,
                   const int32_t* tiles, int64_t num_tiles, const int32_t* block_tables, int64_t max_blocks,
                   int64_t block_size, int64_t num_heads, int64_t num_kv_heads, float scale, float* out,
                   cudaStream_t stream) {
  constexpr size_t kSmem = PrefillSmem<D>::kBytes;
  constexpr int kThreads = PrefillSmem<D>::kThreads;
  // Opt in to more than 48 KiB of dynamic shared memory (per device, so on every launch).
  if (cudaError_t err = cudaFuncSetAttribute(prefill_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(kSmem));
      err != cudaSuccess)
    return err;
  const dim3 grid(static_cast<unsigned>(num_tiles), static_cast<unsigned>(num_kv_heads));
  prefill_attention_kernel<D><<<grid, kThreads, kSmem, stream>>>(q, k_cache, v_cache, positions, tiles, block_tables,
                                                                  int(max_blocks), int(block_size), int(num_heads),
                                                                  int(num_kv_heads), scale * kLog2e, out);
  return cudaGetLastError();
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
  if (num_tiles == 0) return cudaSuccess;
  if (num_tiles < 0 || num_tiles > INT32_MAX || num_kv_heads <= 0 || num_kv_heads > 65535 ||
      num_heads % num_kv_heads != 0 || block_size <= 0 || max_blocks <= 0 ||
      !prefill_attention_supports(head_dim, num_heads / num_kv_heads))
    return cudaErrorInvalidValue;
  switch (head_dim) {
    case 16:
      return launch<16>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                        num_heads, num_kv_heads, scale, out, stream);
    case 32:
      return launch<32>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                        num_heads, num_kv_heads, scale, out, stream);
    case 64:
      return launch<64>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                        num_heads, num_kv_heads, scale, out, stream);
    case 128:
      return launch<128>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                         num_heads, num_kv_heads, scale, out, stream);
    default:
      return launch<256>(q, k_cache, v_cache, positions, tiles, num_tiles, block_tables, max_blocks, block_size,
                         num_heads, num_kv_heads, scale, out, stream);
  }
}

}  // namespace troupe::kernels
