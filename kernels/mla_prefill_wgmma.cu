// Hopper MLA prefill (mla_prefill.hpp): the flash attention of mla_prefill_mma.cu with the products
// on warpgroup MMA (wgmma), which reads K and V from shared memory itself instead of every warp
// pulling them through ldmatrix (the mma.sync kernel's bound: shared-memory bandwidth).
//
// Work unit: one CTA per (query tile of one sequence, head) of the same tile list; kGroups
// warpgroups, warpgroup g the tile's rows [64 g, 64 g + 64) (tile_rows 64: one, 128: two). The loop
// is flash_wgmma.cuh's (two stages, S of tile t overlapping P V of tile t - 1); here: K = [k_nope |
// k_pe] as three 64-dim column blocks and V two, per key from the expanded kv rows and the shared
// k_pe row (keys past the tile's last visible key zero-filled); Q rounded to bf16 once; the causal
// mask where a tile reaches past a warp's first position.
//
// Precision as the mma.sync kernel: q, K, V and P bf16, every sum fp32.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/mla_prefill.hpp"
#include "kernels/flash_wgmma.cuh"
#include "kernels/wgmma.cuh"

namespace troupe::kernels {
namespace {

constexpr int kNope = 128, kRope = 64, kQk = kNope + kRope, kV = 128;
constexpr int kQkBlocks = kQk / 64;  // 64-dim column blocks of 128-byte rows: 3 (V and O: 2, flash_wgmma.cuh)
constexpr float kLog2e = 1.4426950408889634f;

template <int kGroups, int kKeys>
using Layout = flash_wgmma::Layout<kGroups, kKeys, kQkBlocks>;
using flash_wgmma::pack_bf16x2;
using flash_wgmma::swizzled;

// tiles[4 * blockIdx.x ..] = {token0, num_rows, pos0, key0} as mla_prefill_mma.cu.
template <int kGroups, int kKeys>
__global__ void __launch_bounds__(128 * kGroups, kGroups == 1 ? 2 : 1)
    mla_prefill_wgmma_kernel(const float* __restrict__ q, const __nv_bfloat16* __restrict__ kv,
                             const __nv_bfloat16* __restrict__ k_pe, const int32_t* __restrict__ tiles, int num_heads,
                             float scale_log2, float* __restrict__ out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using L = Layout<kGroups, kKeys>;
  constexpr int kThreads = L::kThreads, kRows = L::kRows;
  allow_dependents();
  wait_for_prerequisites();
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (wgmma::smem_address(smem_raw) + 1023u) & ~1023u;
  uint8_t* const smem = smem_raw + (base - wgmma::smem_address(smem_raw));
  const MlaPrefillTile tile = mla_prefill_tile(tiles, blockIdx.x);
  const int token0 = tile.token0, num_rows = tile.num_rows, pos0 = tile.pos0, num_keys = tile.num_keys;
  const int64_t key0 = tile.key0;
  const int h = blockIdx.y;
  const int num_tiles = (num_keys + kKeys - 1) / kKeys;
  const int tid = int(threadIdx.x), g = tid / 128, warp = (tid % 128) / 32, lane = tid % 32, c = lane % 4;
  const int64_t kv_row = int64_t(num_heads) * (kNope + kV);
  const bool active = num_rows > 64 * g;  // this warpgroup has rows to write

  // Copies, addresses hoisted out of the loop: k_nope and V rows are 16 chunks of 16 bytes, k_pe
  // rows 8. Thread tid copies chunk tid % 16 of keys tid / 16 + kStep16 i (k_nope, V) and chunk
  // tid % 8 of keys tid / 8 + kStep8 i (k_pe); every such key has the same row % 8, so the swizzled
  // destination moves by a constant per i.
  constexpr int kStep16 = kThreads / 16, kStep8 = kThreads / 8;
  const int key16 = tid / 16, c16 = tid % 16, key8 = tid / 8, c8 = tid % 8;
  const __nv_bfloat16* const nope_src = kv + (key0 + key16) * kv_row + h * (kNope + kV) + c16 * 8;
  const __nv_bfloat16* const pe_src = k_pe + (key0 + key8) * kRope + c8 * 8;
  const uint32_t nope_dst = (c16 / 8) * L::kKBlock + swizzled(key16, c16 % 8);
  const uint32_t pe_dst = 2 * L::kKBlock + swizzled(key8, c8);
  const int64_t nope_step = int64_t(kStep16) * kv_row;
  auto load_k = [&](int t) {
    const int kbase = t * kKeys;
    const uint32_t k_dst = L::k_stage(base, t);
    const __nv_bfloat16* src = nope_src + int64_t(kbase) * kv_row;
#pragma unroll
    for (int i = 0; i < kKeys / kStep16; ++i)
      wgmma::cp_async16(k_dst + nope_dst + i * kStep16 * 128, src + i * nope_step, kbase + key16 + i * kStep16 < num_keys);
    const __nv_bfloat16* pe = pe_src + int64_t(kbase) * kRope;
#pragma unroll
    for (int i = 0; i < kKeys / kStep8; ++i)
      wgmma::cp_async16(k_dst + pe_dst + i * kStep8 * 128, pe + i * kStep8 * kRope, kbase + key8 + i * kStep8 < num_keys);
  };
  auto load_v = [&](int t) {
    const int kbase = t * kKeys;
    const uint32_t v_dst = L::v_stage(base, t);
    const __nv_bfloat16* src = nope_src + int64_t(kbase) * kv_row + kNope;
#pragma unroll
    for (int i = 0; i < kKeys / kStep16; ++i)
      wgmma::cp_async16(v_dst + nope_dst + i * kStep16 * 128, src + i * nope_step, kbase + key16 + i * kStep16 < num_keys);
  };
  // Q rows as bf16 (rows past num_rows zero).
  auto load_q = [&] {
    for (int u = tid; u < kRows * kQk / 8; u += kThreads) {
      const int r = u / (kQk / 8), chunk = u % (kQk / 8);
      float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
      if (r < num_rows) {
        const float* src = q + (int64_t(token0 + r) * num_heads + h) * kQk + chunk * 8;
        a = __ldg(reinterpret_cast<const float4*>(src));
        b = __ldg(reinterpret_cast<const float4*>(src + 4));
      }
      *reinterpret_cast<uint4*>(smem + L::kQ + (chunk / 8) * L::kQBlock + swizzled(r, chunk % 8)) =
          make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y), pack_bf16x2(b.z, b.w));
    }
  };
  // This thread's two rows' positions (rows past num_rows see more keys than exist: never written).
  const int row_pos[2] = {pos0 + 64 * g + 16 * warp + lane / 4, pos0 + 64 * g + 16 * warp + lane / 4 + 8};
  float o[64], l_run[2];
  flash_wgmma::attend<kGroups, kKeys, kQkBlocks>(base, g, num_tiles, scale_log2, load_q, load_k, load_v, row_pos, o, l_run);
  if (!active) return;

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = l_run[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int r = 64 * g + 16 * warp + lane / 4 + 8 * half;
    if (r >= num_rows) continue;
    const float inv = 1.0f / l;
    float* dst = out + (int64_t(token0 + r) * num_heads + h) * kV + 2 * c;
#pragma unroll
    for (int n = 0; n < kV / 8; ++n)
      *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[4 * n + 2 * half] * inv, o[4 * n + 2 * half + 1] * inv);
  }
#endif
}

template <int kGroups, int kKeys>
cudaError_t launch_variant(const float* q, const uint16_t* kv, const uint16_t* k_pe, const int32_t* tiles,
                           int64_t num_tiles, int64_t num_heads, float scale, float* out, cudaStream_t stream) {
  auto* kernel = mla_prefill_wgmma_kernel<kGroups, kKeys>;
  constexpr int kBytes = Layout<kGroups, kKeys>::kBytes;
  // Set at each launch: the attribute belongs to the current device (a process may drive several).
  if (const cudaError_t attr = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes);
      attr != cudaSuccess)
    return attr;
  // All of shared memory, whatever the decode steps prefer: two 64-row CTAs an SM take 2 x 105 KB,
  // and an FP8 model's 50% held them to one (smem_carveout.hpp).
  return launch_dependent_needing(SmemNeed::full, kernel, dim3(unsigned(num_tiles), unsigned(num_heads)),
                                  dim3(128 * kGroups), size_t(kBytes), stream, q,
                                  reinterpret_cast<const __nv_bfloat16*>(kv),
                                  reinterpret_cast<const __nv_bfloat16*>(k_pe), tiles, int(num_heads),
                                  scale * kLog2e, out);
}

}  // namespace

cudaError_t launch_mla_prefill_wgmma(const float* q, const uint16_t* kv, const uint16_t* k_pe, const int32_t* tiles,
                                     int64_t num_tiles, int64_t tile_rows, int64_t num_heads, int64_t nope,
                                     int64_t rope, int64_t v_dim, float scale, float* out, cudaStream_t stream,
                                     int64_t key_tile) {
  if (num_tiles == 0) return cudaSuccess;
  if (key_tile == 0) key_tile = tile_rows == 128 ? 128 : 64;
  // 64-row tiles with 128-key tiles: not built (255 registers and 272 bytes of spills).
  if (!mla_prefill_mma_supports(nope, rope, v_dim) || (tile_rows != 64 && tile_rows != 128) ||
      (key_tile != 64 && key_tile != 128) || (tile_rows == 64 && key_tile == 128) || num_tiles < 0 || num_tiles > INT32_MAX || num_heads <= 0 ||
      num_heads > 65535 || !q || !kv || !k_pe || !tiles || !out)
    return cudaErrorInvalidValue;
  if (const cudaError_t arch = wgmma::require_sm90(); arch != cudaSuccess) return arch;
  if (tile_rows == 64) return launch_variant<1, 64>(q, kv, k_pe, tiles, num_tiles, num_heads, scale, out, stream);
  return key_tile == 64 ? launch_variant<2, 64>(q, kv, k_pe, tiles, num_tiles, num_heads, scale, out, stream)
                        : launch_variant<2, 128>(q, kv, k_pe, tiles, num_tiles, num_heads, scale, out, stream);
}

}  // namespace troupe::kernels
