// Tensor-core GQA decode attention over a bf16 paged cache (attention_decode_mma.hpp).
//
// One CTA of 4 warps per (query token i, kv head, partition). Per tile of kKeys = 64 keys:
//   1. cp.async copies the tile's 64 K rows and 64 V rows (head_dim bf16 each, 16-byte chunks,
//      swizzled) into stage `tile % kStages`; keys past the partition's end are zero-filled and
//      never read from HBM (their table entries may be -1, their slots NaN). Tiles tile + 1 ..
//      tile + kStages - 1 stay in flight while tile `tile` is multiplied.
//   2. Warp w, keys [16 w, 16 w + 16) of the tile: S [16 rows, 16 keys] = Q K^T over head_dim / 16
//      mma.sync m16n8k16 steps per n8 tile; Q (the group's rows, scaled by scale * log2 e, bf16,
//      rows past the group zero) and K come by ldmatrix, Q once (registers) at head_dim <= 128.
//   3. The warp's own online softmax in fp32, log2 domain: rows g and g + 8 of each quad, row maxima
//      over the quad's 4 lanes; keys past the end are -inf (p = 0).
//   4. P (the S accumulators, exp2'd) repacked in registers as the bf16 A fragment of one k16 step
//      (the accumulator layout of two n8 tiles is the A layout of one 16x16 tile); O [16, head_dim]
//      += P V with V by ldmatrix.trans, head_dim / 8 fp32 accumulator tiles per warp.
// One barrier per tile (tile landed; everyone done with the stage the next copy overwrites). At
// the end the 4 warps' (max, sum, O) merge through shared memory (the stage buffers, reused), and
// the CTA writes out / 1 partition, or its partial (o, max, sum) to the workspace for
// attention_decode.cu's reduce kernel.
//
// Resources: shared memory 4 KiB Q + 3 x 32 KiB stages at head_dim 128 (two CTAs per SM, four
// tiles = 128 KiB in flight per SM while they wait), 3 x 16 KiB at 64, 2 x 64 KiB at 256 (one CTA).
//
// Fragments (mma_sync.cuh): g = lane / 4, c = lane % 4. S and O accumulators: c0, c1 = (row g,
// cols 2c, 2c + 1), c2, c3 = (row g + 8, same cols). ldmatrix addresses:
//   A = Q [row][dim]: lane l addresses row l % 16, dim chunk 2 k16 + l / 16 (a0..a3 of one k16 step);
//   B = K^T (K [key][dim]): lane l addresses key 8 n + l % 8, dim chunk 4 s + l / 8 (b0, b1 of k16
//       steps 2 s and 2 s + 1 for n8 tile n);
//   B = V ([key][dim], .trans): lane l addresses key l % 8 + 8 ((l / 8) % 2), dim chunk 2 j + l / 16
//       (b0, b1 of n8 tiles 2 j and 2 j + 1).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "kernels/attention_decode.hpp"
#include "kernels/attention_decode_mma.hpp"
#include "kernels/dependent_launch.cuh"
#include "kernels/mma_sync.cuh"
#include "kernels/split_kv_partials.cuh"

namespace troupe::kernels {
namespace {

using namespace mma;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kKeys = int(kDecodeMmaTileKeys);  // keys per tile
constexpr int kWarpKeys = kKeys / kWarps;        // keys per warp and tile: one k16 step of P V
constexpr int kRows = 16;                        // MMA rows: the group's q heads, zero-padded
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kWarpKeys == 16, "a warp's P is one 16x16 A fragment");

// Shared memory layout (bytes) at head_dim D.
template <int D>
struct DecodeMmaSmem {
  static constexpr int kStages = D > 128 ? 2 : 3;
  static constexpr int kChunks = D / 8;                 // 16-byte chunks per row
  static constexpr int kRowBytes = D * 2;               // a bf16 row of Q, K or V
  static constexpr int kTileBytes = kKeys * kRowBytes;  // one K (or V) tile
  static constexpr int kStageBytes = 2 * kTileBytes;    // K tile, then V tile
  static constexpr int kQ = 0;                          // [kRows][D] bf16
  static constexpr int kKv = kQ + kRows * kRowBytes;    // kStages stages
  static constexpr int kBytes = kKv + kStages * kStageBytes;
  // After the key loop the stages hold the warps' O: [kWarps][kRows][kOStride] fp32, rows padded
  // by 8 floats so a half-warp's float2 stores (rows g, 4 lanes c) hit distinct banks.
  static constexpr int kOStride = D + 8;
  static_assert(kChunks % 8 == 0, "the swizzle permutes chunks within aligned groups of 8");
  static_assert(kKeys * kChunks % kThreads == 0, "every thread copies the same number of chunks");
  static_assert(kWarps * kRows * kOStride * 4 <= kStages * kStageBytes, "O fits in the stages");
  static_assert(kBytes <= 227 * 1024, "more shared memory than one block may have");
};

template <int D>
__global__ void __launch_bounds__(kThreads, D > 128 ? 1 : 2)
    decode_attention_mma_kernel(const float* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,
                                const __nv_bfloat16* __restrict__ v_cache, const int32_t* __restrict__ positions,
                                const int32_t* __restrict__ seq_of_token, const int32_t* __restrict__ tokens,
                                const int32_t* __restrict__ block_tables, int max_blocks, int block_size,
                                int num_heads, int num_kv_heads, float scale_log2, int partition_keys,
                                int min_keys, float* __restrict__ workspace, float* __restrict__ out) {
  using L = DecodeMmaSmem<D>;
  constexpr int kStages = L::kStages, kChunks = L::kChunks, kRowBytes = L::kRowBytes;
  allow_dependents();  // the next kernel may become resident (the reduce, or a GEMV loading weights)
  wait_for_prerequisites();
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ float max_s[kWarps][kRows], sum_s[kWarps][kRows];
  const uint32_t q_addr = smem_address(smem + L::kQ), kv_addr = smem_address(smem + L::kKv);

  const int i = blockIdx.x, kv_head = blockIdx.y, part = blockIdx.z, num_partitions = gridDim.z;
  const int group = num_heads / num_kv_heads;  // <= kRows (decode_attention_mma_supports)
  const int64_t t = tokens ? tokens[i] : i;
  const int32_t* table = block_tables + int64_t(seq_of_token[t]) * max_blocks;
  const int context = positions[t] + 1;
  const int keys = split_kv::partition_length(context, num_partitions, partition_keys, min_keys);
  const int begin = part * keys, end = min(context, begin + keys);
  const int num_tiles = begin < end ? (end - begin + kKeys - 1) / kKeys : 0;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;

  // Starts copying tile `tile` into its stage: chunk u = threadIdx.x + kThreads * it of the tile
  // is key u / kChunks = threadIdx.x / kChunks + kKeyStep * it, chunk threadIdx.x % kChunks
  // (consecutive threads read consecutive 16 bytes of a row). The key's (table entry, offset in
  // block) advance by kKeyStep per copy: one division per tile. One commit group per tile, empty
  // past the last tile, so wait_group counts tiles.
  constexpr int kKeyStep = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0, "a thread's chunk column is the same in every copy");
  const int chunk = threadIdx.x % kChunks;
  auto load_tile = [&](int tile) {
    if (tile < num_tiles) {
      const uint32_t k_dst = kv_addr + uint32_t(tile % kStages) * L::kStageBytes, v_dst = k_dst + L::kTileBytes;
      int key = threadIdx.x / kChunks, j = begin + tile * kKeys + key;
      int block = j / block_size, in_block = j - block * block_size;
#pragma unroll
      for (int it = 0; it < kKeys / kKeyStep; ++it) {
        const bool valid = j < end;
        int64_t offset = 0;  // a valid address even when nothing is read
        if (valid)
          offset = ((int64_t(table[block]) * block_size + in_block) * num_kv_heads + kv_head) * D + chunk * 8;
        const uint32_t dst = swizzled(key, kRowBytes, chunk);
        cp_async16(k_dst + dst, k_cache + offset, valid ? 16 : 0);
        cp_async16(v_dst + dst, v_cache + offset, valid ? 16 : 0);
        key += kKeyStep;
        j += kKeyStep;
        for (in_block += kKeyStep; in_block >= block_size; in_block -= block_size) ++block;
      }
    }
    cp_async_commit();
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) load_tile(s);

  // Q of the group's heads h0 .. h0 + group - 1 (contiguous in q), scaled and rounded to bf16,
  // while the first tiles are in flight.
  const int h0 = kv_head * group;
  const float* q_src = q + (t * num_heads + h0) * D;
  for (int u = threadIdx.x; u < kRows * kChunks; u += kThreads) {
    const int r = u / kChunks, q_chunk = u % kChunks;
    float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
    if (r < group) {
      a = __ldg(reinterpret_cast<const float4*>(q_src + r * D + q_chunk * 8));
      b = __ldg(reinterpret_cast<const float4*>(q_src + r * D + q_chunk * 8 + 4));
    }
    const uint4 packed =
        make_uint4(pack_bf16x2(a.x * scale_log2, a.y * scale_log2), pack_bf16x2(a.z * scale_log2, a.w * scale_log2),
                   pack_bf16x2(b.x * scale_log2, b.y * scale_log2), pack_bf16x2(b.z * scale_log2, b.w * scale_log2));
    *reinterpret_cast<uint4*>(smem + L::kQ + swizzled(r, kRowBytes, q_chunk)) = packed;
  }

  // Q's A fragments (k16 step k: dim chunks 2k, 2k + 1) stay in registers at head_dim <= 128 (32
  // registers); at 256 they are reloaded per tile (128 O accumulators leave no room).
  constexpr bool kQInRegisters = D <= 128;
  uint32_t qf[kQInRegisters ? D / 16 : 1][4];
  if constexpr (kQInRegisters) {
    __syncthreads();  // Q staged
#pragma unroll
    for (int k = 0; k < D / 16; ++k) ldmatrix_x4(qf[k], q_addr + swizzled(lane % 16, kRowBytes, 2 * k + lane / 16));
  }

  // Per row (g, g + 8): running max (the same in the quad's 4 lanes) and this lane's partial sum.
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  float o[D / 8][4];  // n8 tile n: dims 8 n + 2c (+1) of rows g (o[n][0..1]) and g + 8 (o[n][2..3])
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  const int key0 = warp * kWarpKeys;  // the warp's keys within a tile

  for (int tile = 0; tile < num_tiles; ++tile) {
    cp_async_wait<kStages - 2>();  // this thread's copies of tile `tile` have landed
    __syncthreads();               // everyone's (and Q); everyone done with tile - 1's stage
    load_tile(tile + kStages - 1);  // into tile - 1's stage
    const uint32_t k_tile = kv_addr + uint32_t(tile % kStages) * L::kStageBytes, v_tile = k_tile + L::kTileBytes;

    // 2. S = Q K^T, 32 dims per step.
    float s[2][4];
#pragma unroll
    for (int n = 0; n < 2; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int step = 0; step < kChunks / 4; ++step) {
      uint32_t a0[4], a1[4];  // k16 steps 2 step and 2 step + 1
      if constexpr (kQInRegisters) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          a0[e] = qf[2 * step][e];
          a1[e] = qf[2 * step + 1][e];
        }
      } else {
        ldmatrix_x4(a0, q_addr + swizzled(lane % 16, kRowBytes, 4 * step + lane / 16));
        ldmatrix_x4(a1, q_addr + swizzled(lane % 16, kRowBytes, 4 * step + 2 + lane / 16));
      }
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        uint32_t kf[4];
        ldmatrix_x4(kf, k_tile + swizzled(key0 + 8 * n + lane % 8, kRowBytes, 4 * step + lane / 8));
        mma_bf16(s[n], a0, kf[0], kf[1]);
        mma_bf16(s[n], a1, kf[2], kf[3]);
      }
    }

    // 3. Online softmax (log2 domain; Q carried the scale). Keys past the end: -inf.
    const int tile_key = begin + tile * kKeys + key0;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (tile_key + 8 * n + 2 * c + (e & 1) >= end) s[n][e] = -INFINITY;
        mx[e / 2] = fmaxf(mx[e / 2], s[n][e]);
      }
    float corr[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m_run[r], mx[r]);
      m_use[r] = m_new == -INFINITY ? 0.0f : m_new;  // no key yet: keep exp2 away from -inf - -inf
      corr[r] = exp2f(m_run[r] - m_use[r]);          // 0 before the first key
      m_run[r] = m_new;
      l_run[r] *= corr[r];
    }
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = exp2f(s[n][e] - m_use[e / 2]);  // 0 past the end
        l_run[e / 2] += s[n][e];
      }
    // 4. P as the A fragment of one k16 step: a0 = (row g, keys 2c..), a1 = (row g + 8, keys 2c..),
    // a2 = (row g, keys 8 + 2c..), a3 = (row g + 8, keys 8 + 2c..).
    uint32_t pa[4];
    pa[0] = pack_bf16x2(s[0][0], s[0][1]);
    pa[1] = pack_bf16x2(s[0][2], s[0][3]);
    pa[2] = pack_bf16x2(s[1][0], s[1][1]);
    pa[3] = pack_bf16x2(s[1][2], s[1][3]);
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= corr[0];
      o[n][1] *= corr[0];
      o[n][2] *= corr[1];
      o[n][3] *= corr[1];
    }
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      uint32_t vf[4];
      ldmatrix_x4_trans(vf, v_tile + swizzled(key0 + lane % 8 + 8 * ((lane / 8) % 2), kRowBytes, 2 * j + lane / 16));
      mma_bf16(o[2 * j], pa, vf[0], vf[1]);
      mma_bf16(o[2 * j + 1], pa, vf[2], vf[3]);
    }
  }

  // Merge the warps: row sums over the quad, then (max, sum, O) of each warp through shared memory.
  cp_async_wait<0>();  // only empty groups remain; nothing may land in the stages reused below
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
  __syncthreads();  // every warp is done reading the last tile
  float* o_s = reinterpret_cast<float*>(smem + L::kKv);  // [kWarps][kRows][kOStride]
  if (c == 0) {
    max_s[warp][g] = m_run[0];
    max_s[warp][g + 8] = m_run[1];
    sum_s[warp][g] = l_run[0];
    sum_s[warp][g + 8] = l_run[1];
  }
  float* o_warp = o_s + warp * kRows * L::kOStride;
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    *reinterpret_cast<float2*>(o_warp + g * L::kOStride + 8 * n + 2 * c) = make_float2(o[n][0], o[n][1]);
    *reinterpret_cast<float2*>(o_warp + (g + 8) * L::kOStride + 8 * n + 2 * c) = make_float2(o[n][2], o[n][3]);
  }
  __syncthreads();
  const int64_t stats = int64_t(gridDim.x) * num_heads * num_partitions;  // workspace entries
  for (int u = threadIdx.x; u < group * D; u += kThreads) {
    const int r = u / D, col = u % D;
    float m = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, max_s[w][r]);
    const float m_use = m == -INFINITY ? 0.0f : m;  // an empty partition: every weight 0
    float value = 0.0f, total = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float weight = exp2f(max_s[w][r] - m_use);  // 0 for a warp that saw no key
      value += o_s[(w * kRows + r) * L::kOStride + col] * weight;
      total += sum_s[w][r] * weight;
    }
    const int64_t h = h0 + r;
    if (num_partitions == 1) {
      out[(t * num_heads + h) * D + col] = value / total;
    } else {
      const int64_t item = int64_t(i) * num_heads + h;
      workspace[(item * num_partitions + part) * D + col] = value;
      if (col == 0) {
        float* maxima = workspace + stats * D;
        maxima[item * num_partitions + part] = m;
        maxima[stats + item * num_partitions + part] = total;
      }
    }
  }
}

// The shortest partition, in keys: kDecodeMmaMinPartitionTiles tiles (TROUPE_DECODE_MIN_TILES=T
// for A/B runs; read once), for the partition count and for each token's own split in a graph.
int64_t min_partition_keys() {
  static const int64_t min_tiles = [] {
    const char* env = std::getenv("TROUPE_DECODE_MIN_TILES");
    return env && std::atoll(env) > 0 ? std::atoll(env) : kDecodeMmaMinPartitionTiles;
  }();
  return kDecodeMmaTileKeys * min_tiles;
}

template <int D>
cudaError_t launch_d(dim3 grid, cudaStream_t stream, const float* q, const __nv_bfloat16* k_cache,
                     const __nv_bfloat16* v_cache, const int32_t* positions, const int32_t* seq_of_token,
                     const int32_t* tokens, const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                     int64_t num_heads, int64_t num_kv_heads, float scale, int64_t partition_keys, float* workspace,
                     float* out) {
  auto kernel = decode_attention_mma_kernel<D>;
  constexpr int kSmem = DecodeMmaSmem<D>::kBytes;
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
      err != cudaSuccess)
    return err;
  return launch_dependent(kernel, grid, dim3(kThreads), size_t(kSmem), stream, q, k_cache, v_cache, positions,
                          seq_of_token, tokens, block_tables, int(max_blocks), int(block_size), int(num_heads),
                          int(num_kv_heads), scale * kLog2e, int(partition_keys),
                          split_kv::split_min_keys(min_partition_keys()), workspace, out);
}

}  // namespace

bool decode_attention_mma_supports(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim) {
  if (num_kv_heads <= 0 || num_heads <= 0 || num_heads % num_kv_heads != 0) return false;
  const int64_t group = num_heads / num_kv_heads;
  return group <= kDecodeMmaMaxGroup && (head_dim == 64 || head_dim == 128 || head_dim == 256);
}

int64_t decode_mma_num_partitions(int64_t num_tokens, int64_t num_kv_heads, int64_t max_context, int64_t num_sms) {
  const int64_t items = num_tokens * num_kv_heads;  // CTAs per partition
  if (items <= 0 || max_context <= kDecodeMmaTileKeys) return 1;
  const int64_t wanted = (2 * std::max<int64_t>(1, num_sms) + items - 1) / items;
  const int64_t by_length = max_context / min_partition_keys();  // no partition shorter
  const int64_t parts = std::clamp<int64_t>(std::min(wanted, by_length), 1, kDecodeMaxPartitions);
  const int64_t keys = decode_partition_keys(max_context, parts);
  return (max_context + keys - 1) / keys;  // none empty for the longest context
}

cudaError_t launch_decode_attention_mma(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                        const int32_t* positions, const int32_t* seq_of_token, const int32_t* tokens,
                                        int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                                        int64_t block_size, int64_t num_heads, int64_t num_kv_heads,
                                        int64_t head_dim, float scale, int64_t num_partitions,
                                        int64_t partition_keys, float* workspace, float* out, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
  if (!decode_attention_mma_supports(num_heads, num_kv_heads, head_dim) || num_tokens < 0 ||
      num_tokens > INT32_MAX || num_kv_heads > 65535 || num_heads * head_dim > INT32_MAX || block_size <= 0 ||
      max_blocks <= 0 || num_partitions < 1 || num_partitions > kDecodeMaxPartitions || partition_keys < 0 ||
      partition_keys * num_partitions > INT32_MAX || (num_partitions > 1 && workspace == nullptr) ||
      misaligned(q) || misaligned(k_cache) || misaligned(v_cache))
    return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_kv_heads),
                  static_cast<unsigned>(num_partitions));
  const auto* k = reinterpret_cast<const __nv_bfloat16*>(k_cache);
  const auto* v = reinterpret_cast<const __nv_bfloat16*>(v_cache);
  cudaError_t err = cudaSuccess;
  switch (head_dim) {
    case 64:
      err = launch_d<64>(grid, stream, q, k, v, positions, seq_of_token, tokens, block_tables, max_blocks, block_size,
                         num_heads, num_kv_heads, scale, partition_keys, workspace, out);
      break;
    case 128:
      err = launch_d<128>(grid, stream, q, k, v, positions, seq_of_token, tokens, block_tables, max_blocks,
                          block_size, num_heads, num_kv_heads, scale, partition_keys, workspace, out);
      break;
    default:
      err = launch_d<256>(grid, stream, q, k, v, positions, seq_of_token, tokens, block_tables, max_blocks,
                          block_size, num_heads, num_kv_heads, scale, partition_keys, workspace, out);
      break;
  }
  if (err != cudaSuccess || num_partitions == 1) return err;
  return launch_decode_attention_reduce(tokens, num_tokens, num_heads, head_dim, num_partitions, workspace, out,
                                        stream);
}

}  // namespace troupe::kernels
