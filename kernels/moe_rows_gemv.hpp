#pragma once
// The grouped MoE experts' gate_up + silu and down launches (moe_grouped_gemv.hpp, steps 3 and 4)
// for batches where every active expert has ONE token: a batch of one token (its top_k experts are
// distinct, the shared expert is one more slot). Same inputs and outputs as the grouped launchers
// (active_expert / active_begin / x_perm, act_perm as bf16 * 2^64 with zeros up to act_stride,
// y_perm fp32), so either down launch may follow either gate_up launch; the CPU references are
// moe_grouped_gemv_ref.cpp's (the formula is the same).
// Why: with one token a tensor core has nothing to share, and the grouped kernels' mma tile reads
// 64 bytes of each of 8 rows per load instruction. These stream W as fp8_gemv_rows.cu does: a warp
// reads 512 contiguous bytes of one row per load (lane l: the 16 bytes at 16 l of a 512-byte chunk),
// the products on CUDA cores with e4m3 widened by integer ops (fp8_stream.cuh).
// Layout (moe_rows_gemv.cu): grid (G, max_active); block (x, j) works for active expert j (returns
// at once when j >= num_active) on items of its rows, an item R rows (down: R consecutive rows;
// gate_up: R / 2 act columns, i.e. gate rows c.. and up rows inter + c..); from K = 4,096 bytes on
// the block takes items x, x + G, ... and its warps split K by 512-byte chunks, below that each
// warp owns whole items (fp8_gemv_rows' measured split). A lane keeps 8 16-byte loads in flight with
// the next step prefetched; x waits in shared memory as fp32 (already times 2^64). G fills the GPU
// once over max_active experts.
// An expert with more than one token is still computed right (its positions one after the other,
// the weights read again), only not fast: the host takes this path for one-token batches only.
// Launch shapes depend on max_active and the sizes only (step graphs); nothing comes to the host.
#include <climits>
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "kernels/moe_grouped_gemv.hpp"

namespace troupe::kernels {

// The largest K (hidden for gate_up, inter for down): x waits in shared memory as fp32 (96 KB).
constexpr int64_t kMoeRowsMaxK = 24576;

// Whether the launchers take a projection of K = k: k % 16 == 0 (whole 16-byte loads), 0 < k <=
// kMoeRowsMaxK. Every expert's weight must also be 16-byte aligned (the caller's to ensure).
inline bool moe_rows_supported(int64_t k) { return k > 0 && k % 16 == 0 && k <= kMoeRowsMaxK; }

// The arguments every one-token launcher (these and moe_f16_gemv.hpp's) takes, max_active > 0:
// max_active <= 65535, moe_rows_supported(k), 1 <= out_rows <= INT32_MAX / 4, x_stride a multiple
// of 8 in [moe_perm_stride(k), INT32_MAX], x_perm 16-byte aligned, no null pointer.
inline bool moe_one_token_args_valid(const uint16_t* x_perm, int64_t x_stride, const void* w, const void* w_scale,
                                     const int32_t* num_active, const int32_t* active_expert,
                                     const int32_t* active_begin, int64_t max_active, const void* out,
                                     int64_t out_rows, int64_t k) {
  return max_active > 0 && max_active <= 65535 && moe_rows_supported(k) && out_rows >= 1 &&
         out_rows <= INT32_MAX / 4 && x_stride >= moe_perm_stride(k) && x_stride <= INT32_MAX && x_stride % 8 == 0 &&
         x_perm && reinterpret_cast<uintptr_t>(x_perm) % 16 == 0 && w && w_scale && num_active && active_expert &&
         active_begin && out;
}

#ifdef TROUPE_HAVE_CUDA
// As launch_moe_grouped_gate_up_silu (gate_up[e] [2 inter, k] e4m3 with its 128x128 scales, x_perm
// [*, x_stride] bf16 * 2^64, act_perm [*, act_stride] bf16 * 2^64). cudaErrorInvalidValue, nothing
// launched: !moe_rows_supported(k), inter < 1, x_stride < moe_perm_stride(k) or not a multiple of 8,
// act_stride < moe_perm_stride(inter), x_perm not 16-byte aligned, max_active outside 0..65535, a
// null pointer. max_active == 0 does nothing. Launched as a programmatic dependent.
cudaError_t launch_moe_rows_gate_up_silu(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* gate_up,
                                         const float* const* gate_up_scale, const int32_t* num_active,
                                         const int32_t* active_expert, const int32_t* active_begin,
                                         int64_t max_active, uint16_t* act_perm, int64_t act_stride, int64_t inter,
                                         int64_t k, cudaStream_t stream);
// As launch_moe_grouped_gemv: w[e] [n, k] e4m3, y_perm [*, n] fp32 (real values). Refusals as above
// (n < 1 for inter < 1).
cudaError_t launch_moe_rows_gemv(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                                 const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                                 const int32_t* active_begin, int64_t max_active, float* y_perm, int64_t n, int64_t k,
                                 cudaStream_t stream);
#endif

}  // namespace troupe::kernels
