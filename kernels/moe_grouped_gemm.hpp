#pragma once
// The grouped FP8 block GEMM of a prefill's MoE experts, one launch for every expert: over
// moe_segment_quant.hpp's rows (each expert's rows contiguous, its x scales its own [nkb, count]
// block),
//   out[p, :] = x[p, :] . W_e^T   for every row p of expert e's segment, with fp8_block_gemm.hpp's
//   block formula (128x128 weight scales, 1x128 row scales, each K block's sum promoted in fp32)
// and bf16 or fp32 out. One expert of every row is a dense linear layer (CudaBackend's prefill
// linears that cuBLASLt refuses). The M tiles (MoeGemmTile, up to 128 rows of one expert) come from the host, which
// knows the segments (moe_gemm_tiles); an expert with no row has no tile.
// Three layers: the __global__ kernel (moe_grouped_gemm.cu: Hopper wgmma, m64n128k32 e4m3 from
// shared memory in the 128-byte swizzle, a CTA of one warpgroup per 64x128 output tile (or two per
// 128x128, three per 192x128), a 4-stage cp.async pipeline, DeepGEMM's per-K-block promotion; sm_90a only), this raw-pointer
// launcher, and the CPU reference (moe_grouped_gemm_ref.cpp: fp8_block_gemm_ref per segment).
#include <cstddef>
#include <cstdint>
#include <vector>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// Rows [row_begin, row_begin + rows) (rows 1..tile_rows) of expert `expert`, whose segment is
// [seg_first, seg_first + seg_count).
struct MoeGemmTile {
  int32_t expert, row_begin, rows, seg_first, seg_count;
};

// The default tile: 64 rows (one warpgroup a CTA; an expert of ~150 rows wastes less of its last
// tile than with 128, and two CTAs share an SM).
constexpr int64_t kMoeGemmTileRows = 64;

// The tiles of moe_align's offsets ([num_segments + 1], pad_to 1): each segment cut into runs of
// up to tile_rows (64, 128 or 192) rows.
std::vector<MoeGemmTile> moe_gemm_tiles(const int32_t* offsets, int32_t num_segments,
                                        int64_t tile_rows = kMoeGemmTileRows);

// The shapes the kernel takes: whole 128-blocks in k, n a multiple of 16 (a last partial 128-row
// W block: R1's kv_a, n = 576).
inline bool moe_grouped_gemm_supported(int64_t n, int64_t k) {
  return n > 0 && k > 0 && n % 16 == 0 && k % 128 == 0;
}

// CPU reference, fp64. x: [P, k] real values (the e4m3 values); x_scale: moe_segment_quant's layout;
// w[e]: [n, k] e4m3 bits, w_scale[e]: [ceil(n / 128), k / 128]; out: [P, n].
void moe_grouped_gemm_ref(const float* x, const float* x_scale, const uint8_t* const* w, const float* const* w_scale,
                          const int32_t* offsets, int32_t num_segments, double* out, int64_t n, int64_t k);

#ifdef TROUPE_HAVE_CUDA
// Device pointers: x_fp8 [P, k], x_scale as above, w_table / w_scale_table: [experts] pointers on the
// device, tiles [num_tiles] on the device (moe_gemm_tiles with the same tile_rows), out [P, n] bf16
// bits (rows outside every tile untouched). x_fp8 and every W 16-byte aligned.
// cudaErrorInvalidValue for shapes moe_grouped_gemm_supported refuses, num_tiles < 0 or > 65535 (the
// grid's y; 4.2M rows of 64) or tile_rows other than 64, 128 and 192; cudaErrorNotSupported on a GPU other than sm_90. overlap (k / 128
// even; else ignored; never with 192-row tiles): K blocks in pairs, the second's products running while
// the first is promoted (two partial-sum buffers, 2 blocks prefetched instead of 3; the backend's
// default). The loop before stop 43 (every block overlapped with the next, which made ptxas
// serialize every wgmma, C7514) measured R1's MoE layer at 4,096 tokens 8.41 ms against 8.89 with
// no overlap on the H200; TROUPE_MOE_GEMM_OVERLAP=serialized still selects it (read at each call).
// 192-row tiles (an experiment, not yet measured): an expert of R1's ~128-150 rows a 4,096-token
// prefill is one tile, so its W tiles cross L2 once instead of three times (the 64-row tiles' loads
// measured L2-bound), at the same tensor-core work as three 64-row tiles.
cudaError_t launch_moe_grouped_gemm(const uint8_t* x_fp8, const float* x_scale, const uint8_t* const* w_table,
                                    const float* const* w_scale_table, const MoeGemmTile* tiles, int32_t num_tiles,
                                    int64_t tile_rows, uint16_t* out, int64_t n, int64_t k, cudaStream_t stream,
                                    bool overlap = false);
// fp32 out (the dense prefill linears cuBLASLt refuses: R1's kv_a).
cudaError_t launch_moe_grouped_gemm(const uint8_t* x_fp8, const float* x_scale, const uint8_t* const* w_table,
                                    const float* const* w_scale_table, const MoeGemmTile* tiles, int32_t num_tiles,
                                    int64_t tile_rows, float* out, int64_t n, int64_t k, cudaStream_t stream,
                                    bool overlap = false);
#endif

}  // namespace troupe::kernels
