#pragma once
// The one-token MoE experts' gate_up + silu and down launches (moe_rows_gemv.hpp's contract:
// same inputs and outputs, either down launch may follow either gate_up launch; the CPU
// references are moe_grouped_gemv_ref.cpp's) on f16 tensor cores: fp8_gemv_f16's body
// (fp8_gemv_f16_tiles.cuh) with the grid's y the active expert. Why: moe_rows_gemv widens e4m3 to
// fp32 and makes one FMA per weight, about four instructions a byte, as the dense row kernel did
// before fp8_gemv_f16 (R1's expert gate_up at one token: 0.40 of HBM on the row kernel, 0.43 on
// f16 tensor cores, per expert; the grouped launch streams 9 experts at once).
// Layout (moe_f16_gemv.cu): block (x, y) works on the tiles x, x + G, ... of one expert's weight;
// gate_up tiles are 8 gate rows c.. and the 8 up rows inter + c.. (rows g and g + 8 of the mma), so
// silu(gate) * up is formed in the lane that holds both sums; down tiles are 16 consecutive rows.
// x_perm rows (bf16 * 2^64) are staged as f16 with a power-of-two exponent per 128-wide K block,
// the 2^64 leaving with the sums. G fills two CTAs per SM over max_active experts.
// Which expert and positions block row y takes:
//   - tokens == 1 (each expert one position: a token's experts are distinct): active expert y, its
//     positions one at a time;
//   - else the active list cut into units of at most `chunk` consecutive positions of one expert
//     (chunk: up to 8 tokens, the mma's N, as many as leave two CTAs an SM their staged x: 3 at R1's
//     K of 7,168, 8 at 2,048), unit y read in one pass: an expert's weights are read once for its
//     first `chunk` positions and once more for each further unit (R1 at 64 tokens: the shared
//     expert's 64 positions are 22 gate_up units, side by side, mostly from L2); max_active +
//     max_positions / chunk block rows, those past the last unit returning at once.
// A unit's CTAs: two an SM spread over max_active units, or, where the units' bound passes the
// resident CTAs (a wide batch), ceil(4 x resident / bound) a unit (moe_f16_crowded_ctas).
// Launch shapes depend on max_active, max_positions, tokens and the sizes only (step graphs).
// Units are plain launches, one-token batches programmatic dependents: as programmatic dependents
// the units failed the DeepSeek demo's 2-8 token step graphs with illegal addresses on the H200,
// while compute-sanitizer runs and TROUPE_NO_PDL=1 runs passed (go70-go72); not understood. Both
// read the active list through L2 (__ldcg) as a guard; TROUPE_MOE_UNITS_PDL=1 launches the units
// as dependents again, to test whether that guard is the cure.
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// Whether the launchers take hidden size `hidden` and intermediate size `inter`: both
// moe_rows_supported (K % 16 == 0, at most kMoeRowsMaxK) and inter % 8 == 0 (a gate_up tile's 8
// columns).
bool moe_f16_supported(int64_t hidden, int64_t inter);

// The CTAs each unit takes in a wide batch, whose `bound` block rows (units at most) pass the
// `resident` CTAs (two an SM): ceil(4 x resident / bound), so the last wave holds pieces of
// experts rather than whole ones on lone CTAs (moe_f16_gemv.cu's units_share says why). 0 where
// bound <= resident: the units then share the resident CTAs as plan_f16 spreads them.
inline int64_t moe_f16_crowded_ctas(int64_t resident, int64_t bound) {
  return bound > resident ? (4 * resident + bound - 1) / bound : 0;
}

#ifdef TROUPE_HAVE_CUDA
// As launch_moe_rows_gate_up_silu (any number of positions an expert), max_positions bounding
// active_begin[num_active] (the slots) and tokens the positions of any one expert (the batch's
// tokens); also cudaErrorInvalidValue when inter % 8 != 0, max_positions < 0, tokens < 1, or more
// than 65,535 block rows.
cudaError_t launch_moe_f16_gate_up_silu(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* gate_up,
                                        const float* const* gate_up_scale, const int32_t* num_active,
                                        const int32_t* active_expert, const int32_t* active_begin,
                                        int64_t max_active, int64_t max_positions, int64_t tokens,
                                        uint16_t* act_perm, int64_t act_stride, int64_t inter, int64_t k,
                                        cudaStream_t stream);
// As launch_moe_rows_gemv, max_positions and tokens as above.
cudaError_t launch_moe_f16_gemv(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                                const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                                const int32_t* active_begin, int64_t max_active, int64_t max_positions, int64_t tokens,
                                float* y_perm, int64_t n, int64_t k, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
