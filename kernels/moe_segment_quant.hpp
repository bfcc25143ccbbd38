#pragma once
// FP8 activations of the grouped prefill experts: the rows of moe_align.hpp's layout (pad_to 1),
// quantized per row and 128 channels as fp8_quant.hpp does, with the scales of each expert's rows
// stored as their own fp8_quant layout, so one expert's rows are a GEMM operand as they stand:
//   segment e = positions [offsets[e], offsets[e + 1]) (c_e = their count, maybe 0)
//   x_fp8[p, :]                          e4m3 bits of row p
//   x_scale[nkb * offsets[e] + kb * c_e + (p - offsets[e])]   the scale of row p's K block kb
// (nkb = ceil(K / 128)): expert e's scales start at x_scale + nkb * offsets[e] and are
// [nkb, c_e], K-block-major, what launch_fp8_block_gemm{,_cublaslt} read for an x of c_e rows.
// Two producers:
//   gather_quant: row p = x[sorted_slots[p] / top_k, :] (fp32 or bf16), quantized;
//   silu_quant:   row p = bf16(silu(g) * u) of gate_up [P, 2 * inter] = [g | u] (bf16 bits; the
//                 formula and rounding of mlp_activation.hpp), quantized.
// Three layers: the __global__ kernels (moe_segment_quant.cu: one warp per (row, two K blocks),
// the row's segment found by binary search in offsets), these raw-pointer launchers, and the CPU
// references (moe_segment_quant_ref.cpp: the formula of fp8_quant_ref per segment, bit for bit).
#include <cstddef>
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU references. rows: [num_positions, k] real values (fp32; bf16 widened exactly); offsets:
// [num_segments + 1] with offsets[num_segments] == num_positions; x_fp8: [num_positions, k];
// x_scale: [ceil(k / 128) * num_positions].
void moe_segment_quant_ref(const float* rows, const int32_t* offsets, int32_t num_segments, uint8_t* x_fp8,
                           float* x_scale, int64_t num_positions, int64_t k);
// gate_up: [num_positions, 2 * inter] bf16 bits; act_fp8: [num_positions, inter].
void moe_silu_quant_ref(const uint16_t* gate_up, const int32_t* offsets, int32_t num_segments, uint8_t* act_fp8,
                        float* act_scale, int64_t num_positions, int64_t inter);

#ifdef TROUPE_HAVE_CUDA
// Device pointers. x: [num_tokens, k]; sorted_slots: [num_positions] (moe_align's, no padding:
// every entry a slot); offsets: [num_segments + 1] on the device, offsets[num_segments] ==
// num_positions. num_positions == 0 does nothing; cudaErrorInvalidValue for negative sizes, k <= 0,
// top_k < 1, num_segments < 1 or more than INT32_MAX rows.
cudaError_t launch_moe_gather_quant(const float* x, const int32_t* sorted_slots, int32_t top_k,
                                    const int32_t* offsets, int32_t num_segments, uint8_t* x_fp8, float* x_scale,
                                    int64_t num_positions, int64_t k, cudaStream_t stream);
cudaError_t launch_moe_gather_quant(const uint16_t* x, const int32_t* sorted_slots, int32_t top_k,
                                    const int32_t* offsets, int32_t num_segments, uint8_t* x_fp8, float* x_scale,
                                    int64_t num_positions, int64_t k, cudaStream_t stream);
cudaError_t launch_moe_silu_quant(const uint16_t* gate_up, const int32_t* offsets, int32_t num_segments,
                                  uint8_t* act_fp8, float* act_scale, int64_t num_positions, int64_t inter,
                                  cudaStream_t stream);
#endif

}  // namespace troupe::kernels
