#include <cuda_bf16.h>

#include "kernels/fp8_gemv_f16_tiles.cuh"
#include "kernels/moe_f16_gemv.hpp"
#include "kernels/moe_grouped_gemv.hpp"
#include "kernels/moe_rows_gemv.hpp"

// moe_f16_gemv.hpp says what; fp8_gemv_f16_tiles.cuh holds the tile loop. Scales: x_perm holds
// x * 2^64, so the sums hold y * 2^64 and leave times 2^-64; act_perm gets bf16(silu(g) u * 2^64)
// from the real g and u, as moe_rows_gemv.cu's epilogue forms it.
namespace troupe::kernels {
namespace {

using namespace f16_tiles;

constexpr float kUnshift = 1.0f / kMoeXShift;  // 2^-64
// x_perm holds x 2^64 and act_perm holds silu(g) u 2^64 (moe_grouped_gemv.hpp).
struct MoeShift {
  static constexpr float kDown = kUnshift, kUp = kMoeXShift;
};
using SiluOut = SiluTiles<MoeShift>;

// Block (x, j): active expert j, its positions one at a time. out_rows: inter (SILU) or n;
// out_stride: act_stride or n.
// 112 registers at three ring buffers (the loop's comment says why), 16 more for a fourth.
template <bool SILU, int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing> + 16)
    moe_f16_kernel(const uint16_t* __restrict__ x_perm, int64_t x_stride, const uint8_t* const* __restrict__ w_of,
                   const float* const* __restrict__ scale_of, const int32_t* __restrict__ num_active,
                   const int32_t* __restrict__ active_expert, const int32_t* __restrict__ active_begin,
                   void* __restrict__ out_raw, int64_t out_stride, int out_rows, int k, int num_kb, int sharing) {
  allow_dependents();  // the next kernel may become resident (gemv_tiles signals again, later: no-op)
  // The expert list and x_perm come from the kernels before: nothing, not even W, is known earlier.
  wait_for_prerequisites();
  const int j = int(blockIdx.y);
  if (j >= *num_active) return;  // the whole block, before any barrier
  const int expert = active_expert[j], p_begin = active_begin[j], p_end = active_begin[j + 1];
  const uint8_t* w = w_of[expert];
  const float* w_scale = scale_of[expert];
  for (int p = p_begin; p < p_end; ++p) {
    if (p > p_begin) __syncthreads();  // every warp is done with the previous position's x
    if constexpr (SILU) {
      uint16_t* act = static_cast<uint16_t*>(out_raw) + int64_t(p) * out_stride;
      // act columns [inter, act_stride) are zero: the grouped down kernel reads them
      if (blockIdx.x == 0)
        for (int64_t col = out_rows + int(threadIdx.x); col < out_stride; col += blockDim.x) act[col] = 0;
      gemv_tiles<kRing>(x_perm + int64_t(p) * x_stride, int(x_stride), w, w_scale, 1, k, num_kb, sharing,
                 SiluOut{act, out_stride, out_rows});
    } else {
      gemv_tiles<kRing>(x_perm + int64_t(p) * x_stride, int(x_stride), w, w_scale, 1, k, num_kb, sharing,
                 RowTiles<float, true>{{out_rows}, static_cast<float*>(out_raw) + int64_t(p) * out_stride, kUnshift});
    }
  }
}

template <bool SILU>
cudaError_t launch_moe_f16(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                           const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                           const int32_t* active_begin, int64_t max_active, void* out, int64_t out_stride,
                           int64_t out_rows, int64_t k, cudaStream_t stream) {
  if (max_active == 0) return cudaSuccess;
  if (!moe_one_token_args_valid(x_perm, x_stride, w, w_scale, num_active, active_expert, active_begin, max_active,
                                out, out_rows, k) ||
      (SILU && out_rows % kGateColumns != 0))
    return cudaErrorInvalidValue;
  const auto kernel = ring_buffers() == 4 ? moe_f16_kernel<SILU, 4> : moe_f16_kernel<SILU, 3>;
  const int64_t tiles = SILU ? out_rows / kGateColumns : (out_rows + kTileRows - 1) / kTileRows;
  F16Plan p;
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(kernel), 1, tiles, k, max_active, &p);
      err != cudaSuccess)
    return err;
  const dim3 grid{unsigned(p.grid), unsigned(max_active)};
  return launch_dependent(kernel, grid, dim3(kThreads), p.smem, stream, x_perm, x_stride, w, w_scale, num_active,
                          active_expert, active_begin, out, out_stride, int(out_rows), int(k), int(fp8_num_blocks(k)),
                          p.sharing);
}

}  // namespace

bool moe_f16_supported(int64_t hidden, int64_t inter) {
  return moe_rows_supported(hidden) && moe_rows_supported(inter) && inter % kGateColumns == 0;
}

cudaError_t launch_moe_f16_gate_up_silu(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* gate_up,
                                        const float* const* gate_up_scale, const int32_t* num_active,
                                        const int32_t* active_expert, const int32_t* active_begin,
                                        int64_t max_active, uint16_t* act_perm, int64_t act_stride, int64_t inter,
                                        int64_t k, cudaStream_t stream) {
  if (inter < 1 || act_stride < moe_perm_stride(inter)) return cudaErrorInvalidValue;
  return launch_moe_f16<true>(x_perm, x_stride, gate_up, gate_up_scale, num_active, active_expert, active_begin,
                              max_active, act_perm, act_stride, inter, k, stream);
}

cudaError_t launch_moe_f16_gemv(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                                const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                                const int32_t* active_begin, int64_t max_active, float* y_perm, int64_t n, int64_t k,
                                cudaStream_t stream) {
  return launch_moe_f16<false>(x_perm, x_stride, w, w_scale, num_active, active_expert, active_begin, max_active,
                               y_perm, n, n, k, stream);
}

}  // namespace troupe::kernels
