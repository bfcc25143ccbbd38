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
constexpr int kGateColumns = 8;                // act columns of a gate_up tile

// The Out policy of gate_up [2 inter, k] (fp8_gemv_f16_tiles.cuh's Out contract): tile r holds gate
// rows 8 r .. 8 r + 7 (half 0) and their up rows inter + 8 r .. (half 1), so the lane with row g's
// sums writes act column 8 r + g (tokens 2t, 2t + 1): bf16(silu(g) u 2^64) from the real g and u
// (the sums times 2^-64), mlp_activation's formula g / (1 + e^-g) * u.
struct SiluOut {
  static constexpr bool kHalvesShareScale = false;  // gate and up rows lie in different 128-row blocks
  uint16_t* act;
  int64_t act_stride;
  int inter;
  __device__ int num_tiles() const { return inter / kGateColumns; }
  __device__ int base_row(int tile, int g) const { return tile * kGateColumns + g; }  // the gate row
  __device__ int weight_row(int base, int half) const { return half * inter + base; }
  __device__ int scale_block(int tile, int half) const {
    return (half * inter + tile * kGateColumns) / int(kFp8BlockSize);
  }
  __device__ void store(int tile, int g, int t, int m, const float (&total)[4]) const {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int tok = 2 * t + j;
      if (tok >= m) continue;
      const float a = total[j] * kUnshift, b = total[2 + j] * kUnshift;  // gate, up
      const __nv_bfloat16 v = __float2bfloat16_rn(a / (1.0f + expf(-a)) * b * kMoeXShift);
      act[int64_t(tok) * act_stride + tile * kGateColumns + g] = *reinterpret_cast<const uint16_t*>(&v);
    }
  }
};

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
