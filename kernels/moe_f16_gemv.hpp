#pragma once
// The one-token MoE experts' gate_up + silu and down launches (moe_rows_gemv.hpp's contract:
// same inputs and outputs, either down launch may follow either gate_up launch; the CPU
// references are moe_grouped_gemv_ref.cpp's) on f16 tensor cores: fp8_gemv_f16's body
// (fp8_gemv_f16_tiles.cuh) with the grid's y the active expert. Why: moe_rows_gemv widens e4m3 to
// fp32 and makes one FMA per weight, about four instructions a byte, as the dense row kernel did
// before fp8_gemv_f16 (R1's expert gate_up at one token: 0.40 of HBM on the row kernel, 0.43 on
// f16 tensor cores, per expert; the grouped launch streams 9 experts at once).
// Layout (moe_f16_gemv.cu): block (x, j) works for active expert j (returns at once when j >=
// num_active) on the tiles x, x + G, ... of its weight; gate_up tiles are 8 gate rows c.. and the 8
// up rows inter + c.. (rows g and g + 8 of the mma), so silu(gate) * up is formed in the lane that
// holds both sums; down tiles are 16 consecutive rows. x_perm rows (bf16 * 2^64) are staged as
// f16 with a power-of-two exponent per 128-wide K block, the 2^64 leaving with the sums. G fills
// two CTAs per SM over max_active experts. An expert with several positions takes them one at a
// time (right, the weights read again; the host takes this path for one-token batches only).
// Launch shapes depend on max_active and the sizes only (step graphs).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// Whether the launchers take hidden size `hidden` and intermediate size `inter`: both
// moe_rows_supported (K % 16 == 0, at most kMoeRowsMaxK) and inter % 8 == 0 (a gate_up tile's 8
// columns).
bool moe_f16_supported(int64_t hidden, int64_t inter);

#ifdef TROUPE_HAVE_CUDA
// As launch_moe_rows_gate_up_silu; also cudaErrorInvalidValue when inter % 8 != 0.
cudaError_t launch_moe_f16_gate_up_silu(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* gate_up,
                                        const float* const* gate_up_scale, const int32_t* num_active,
                                        const int32_t* active_expert, const int32_t* active_begin,
                                        int64_t max_active, uint16_t* act_perm, int64_t act_stride, int64_t inter,
                                        int64_t k, cudaStream_t stream);
// As launch_moe_rows_gemv.
cudaError_t launch_moe_f16_gemv(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                                const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                                const int32_t* active_begin, int64_t max_active, float* y_perm, int64_t n, int64_t k,
                                cudaStream_t stream);
#endif

}  // namespace troupe::kernels
