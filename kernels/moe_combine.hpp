#pragma once
// The MoE data movement around the grouped expert GEMMs, over moe_align.hpp's layout:
//   gather:  x_perm[p, :] = x[sorted_slots[p] / top_k, :] for each position p holding a slot
//            (padding positions, sorted_slots[p] < 0, are left as they are: their GEMM rows are
//            never read). fp32 or bf16 rows, bits copied.
//   combine: out[t, :] = shared[t, :] (or 0 when shared is null)
//                        + sum over i in 0..top_k-1 of weights[t, i] * y_perm[slot_pos[t * top_k + i], :]
//            accumulated in fp32 in that order with one fma per term (so the reference gives the
//            same bits); a slot with slot_pos -1 (another rank's expert) adds nothing. y_perm fp32
//            or bf16 (widened exactly); out fp32 and may alias shared.
// The expert MLP between them (gate/up GEMM, silu_and_mul: kernels/mlp_activation.hpp and
// elementwise.hpp, down GEMM) lives elsewhere.
// Three layers: the __global__ kernels (moe_combine.cu: one block per row (the combine: per row and
// column chunk), 16-byte accesses when the rows allow), these raw-pointer launchers, and the CPU references (moe_combine_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU references. x: [num_tokens, hidden]; sorted_slots: [num_positions]; x_perm: [num_positions, hidden].
void moe_gather_ref(const float* x, const int32_t* sorted_slots, float* x_perm, int64_t num_positions,
                    int32_t top_k, int64_t hidden);
void moe_gather_ref(const uint16_t* x, const int32_t* sorted_slots, uint16_t* x_perm, int64_t num_positions,
                    int32_t top_k, int64_t hidden);
// y_perm: [num_positions, hidden]; slot_pos, weights: [num_tokens, top_k]; shared, out:
// [num_tokens, hidden] (shared may be null).
void moe_combine_ref(const float* y_perm, const int32_t* slot_pos, const float* weights, const float* shared,
                     float* out, int64_t num_tokens, int32_t top_k, int64_t hidden);
void moe_combine_ref(const uint16_t* y_perm, const int32_t* slot_pos, const float* weights, const float* shared,
                     float* out, int64_t num_tokens, int32_t top_k, int64_t hidden);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as the references. Zero rows do nothing; negative sizes, more than
// INT32_MAX rows or top_k < 1 give cudaErrorInvalidValue.
cudaError_t launch_moe_gather_f32(const float* x, const int32_t* sorted_slots, float* x_perm, int64_t num_positions,
                                  int32_t top_k, int64_t hidden, cudaStream_t stream);
cudaError_t launch_moe_gather_bf16(const uint16_t* x, const int32_t* sorted_slots, uint16_t* x_perm,
                                   int64_t num_positions, int32_t top_k, int64_t hidden, cudaStream_t stream);
cudaError_t launch_moe_combine_f32(const float* y_perm, const int32_t* slot_pos, const float* weights,
                                   const float* shared, float* out, int64_t num_tokens, int32_t top_k, int64_t hidden,
                                   cudaStream_t stream);
cudaError_t launch_moe_combine_bf16(const uint16_t* y_perm, const int32_t* slot_pos, const float* weights,
                                    const float* shared, float* out, int64_t num_tokens, int32_t top_k,
                                    int64_t hidden, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
