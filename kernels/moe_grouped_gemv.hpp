#pragma once
// The routed experts of a DeepSeek-V3/R1 MoE layer for decode-sized batches, on the device with no
// host sync: one launch per projection runs every (expert, token) pair the router chose, reading
// each chosen expert's FP8 block-scaled weights once for all its tokens (kernels/fp8_block_gemm.hpp
// has the formula and the e4m3 x bf16 mma trick). Steps, over moe_align.hpp's layout with
// pad_to 1 (position p holds slot sorted_slots[p], expert e's positions are contiguous):
//   0. moe_local_ids: the router's [n, top_k] choice in local expert ids (id - expert_begin, -1 for
//      another rank's expert), plus, with a shared expert, a slot top_k per token on expert
//      num_local with weight 1 (the shared expert runs in the same grouped launches, and the
//      combine then writes out = shared + routed).
//   1. moe_active_experts: the local experts with at least one slot, compacted:
//        active_expert[j], active_begin[j] (= offsets[expert]), active_begin[num_active] = the total;
//        slot_pos[s] = -1 for slots routed to another rank's experts (so the combine skips them).
//   2. moe_gather_scaled: x_perm[p, :] = bf16(x[sorted_slots[p] / slot_div, :] * 2^64), columns
//      [k, x_stride) zero (the GEMV reads whole 128-blocks); rows past the total: zero.
//   3. moe_grouped_gate_up_silu: act_perm[p, c] = bf16(silu(g) * u * 2^64), [g | u] = the rows c and
//      inter + c of expert e's gate_up W [2 inter, k] times x_perm[p]; columns [inter, act_stride) 0.
//   4. moe_grouped_gemv: y_perm[p, r] = (W_e x_perm[p])[r] / 2^64 for the down W [n, k] (fp32).
//   5. the combine (moe_combine.hpp, launch_moe_combine_f32 with slot_pos and the router weights).
// A one-token batch runs 3 and 4 through moe_rows_gemv.hpp's launchers instead (same inputs and
// outputs; W streamed row by row on CUDA cores).
// The 2^64 keeps tiny activations times tiny weights inside fp32's normal range in the mma (the
// weights are widened to bf16 * 2^-112); the kernels take it out again.
// Weights: device arrays of per-expert pointers, w[e] e4m3 [rows, k] row-major and w_scale[e] fp32
// [ceil(rows / 128), ceil(k / 128)], e a local expert index.
// Grid of 3 and 4: (row tiles, min(num_local, num_slots)); a CTA j >= num_active returns at once,
// so an expert with no token costs nothing and a launch's shape depends on the batch size only
// (step graphs). A CTA = 4 row warps x 16 rows (64 rows, or 32 act columns: 2 warps gate, 2 up),
// times a K split of 2 (at most 64 tokens an expert, else 1) whose partial sums meet in
// shared memory: few tokens touch few experts, and the split keeps enough loads in flight; its
// expert's positions go through in passes of 32 tokens (4 mma tiles of 8), more passes when an
// expert has more than 32 tokens (the weights are read again, mostly from L2).
// Three layers: the __global__ kernels (moe_grouped_gemv.cu), these raw-pointer launchers, and the
// CPU references (moe_grouped_gemv_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

constexpr int32_t kMoeGroupedMaxExperts = 512;  // num_local and E limits (moe_align's)
constexpr float kMoeXShift = 18446744073709551616.0f;  // 2^64, the scale of x_perm and act_perm

// The row stride of x_perm / act_perm for k columns: k rounded up to a 128-block.
inline int64_t moe_perm_stride(int64_t k) { return (k + 127) / 128 * 128; }
// How many CTAs rows of the grids are launched: min(num_local, num_slots).
inline int64_t moe_max_active(int64_t num_local, int64_t num_slots) {
  return num_local < num_slots ? num_local : num_slots;
}

// CPU references.
// ids, weights: [n, top_k]; ids_out, weights_out: [n, top_k + with_shared].
void moe_local_ids_ref(const int32_t* ids, const float* weights, int64_t n, int32_t top_k, int32_t expert_begin,
                       int32_t num_local, bool with_shared, int32_t* ids_out, float* weights_out);
// ids: [num_slots] (global expert ids); counts, offsets: moe_align_ref's over num_experts (global E);
// local experts are [expert_begin, expert_begin + num_local). active_expert: [max_active] (local
// index), active_begin: [max_active + 1]; slot_pos updated in place.
void moe_active_experts_ref(const int32_t* ids, int64_t num_slots, const int32_t* counts, const int32_t* offsets,
                            int32_t expert_begin, int32_t num_local, int32_t* num_active, int32_t* active_expert,
                            int32_t* active_begin, int32_t* slot_pos);
// x: [num_tokens, k] real values; x_perm: [num_positions, x_stride] real values (not shifted).
void moe_gather_scaled_ref(const float* x, const int32_t* sorted_slots, int32_t slot_div, float* x_perm,
                           int64_t num_positions, int64_t k, int64_t x_stride);
// One expert's rows: out[p, r] = sum over 128-blocks kb of (sum_i x[p, i] w[r, i]) * w_scale[r/128, kb]
// for p < m, in fp64 (x real values, already rounded as the device holds them).
// gate_up_silu: act[p, c] = silu(g) * u for c < inter (fp64, not rounded).
void moe_expert_rows_ref(const float* x, int64_t x_stride, const uint8_t* w, const float* w_scale, double* out,
                         int64_t m, int64_t rows, int64_t k);
void moe_expert_silu_ref(const float* x, int64_t x_stride, const uint8_t* gate_up, const float* gate_up_scale,
                         double* act, int64_t m, int64_t inter, int64_t k);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as moe_local_ids_ref. n == 0 does nothing; cudaErrorInvalidValue for
// n < 0, n * (top_k + 1) > INT32_MAX, top_k < 1, num_local < 1 or expert_begin < 0.
cudaError_t launch_moe_local_ids(const int32_t* ids, const float* weights, int64_t n, int32_t top_k,
                                 int32_t expert_begin, int32_t num_local, bool with_shared, int32_t* ids_out,
                                 float* weights_out, cudaStream_t stream);
// Device pointers, shapes as the references. max_active = moe_max_active(num_local, num_slots).
// cudaErrorInvalidValue, nothing launched: num_slots < 0 or > INT32_MAX, num_experts outside
// 1..512, num_local < 1, expert_begin < 0 or expert_begin + num_local > num_experts.
cudaError_t launch_moe_active_experts(const int32_t* ids, int64_t num_slots, int32_t num_experts,
                                      const int32_t* counts, const int32_t* offsets, int32_t expert_begin,
                                      int32_t num_local, int32_t* num_active, int32_t* active_expert,
                                      int32_t* active_begin, int32_t* slot_pos, cudaStream_t stream);
// Steps 0 and 1 with moe_align between them (pad_to 1, capacity = the slots) in one launch, for
// small batches: the same outputs as launch_moe_local_ids, launch_moe_align (ids_out, n * (top_k +
// with_shared) slots, num_local + with_shared experts, pad_to 1, counts, offsets, sorted_slots,
// capacity = the slots, slot_pos) and launch_moe_active_experts (ids_out, the slots, the same
// experts, counts, offsets, expert_begin 0, all of them, ...), bit for bit. One CTA; a slot's
// position is its expert's offset + its earlier slots of that expert (align's slot order).
// cudaErrorInvalidValue, nothing launched: n < 0, top_k < 1, num_local < 1, expert_begin < 0,
// more than kMoeSlotsOneBlockMax slots or more than kMoeGroupedMaxExperts experts with the shared one.
constexpr int64_t kMoeSlotsOneBlockMax = 256;
cudaError_t launch_moe_slots_one_block(const int32_t* ids, const float* weights, int64_t n, int32_t top_k,
                                       int32_t expert_begin, int32_t num_local, bool with_shared, int32_t* ids_out,
                                       float* weights_out, int32_t* counts, int32_t* offsets, int32_t* sorted_slots,
                                       int32_t* slot_pos, int32_t* num_active, int32_t* active_expert,
                                       int32_t* active_begin, cudaStream_t stream);
// x: [num_tokens, k] fp32 or bf16 bits; x_perm: [num_positions, x_stride] bf16 bits (x * 2^64).
// x_stride >= moe_perm_stride(k); slot_div >= 1 (top_k for the tokens' rows, 1 for per-slot rows).
cudaError_t launch_moe_gather_scaled(const float* x, const int32_t* sorted_slots, int32_t slot_div,
                                     uint16_t* x_perm, int64_t num_positions, int64_t k, int64_t x_stride,
                                     cudaStream_t stream);
cudaError_t launch_moe_gather_scaled(const uint16_t* x, const int32_t* sorted_slots, int32_t slot_div,
                                     uint16_t* x_perm, int64_t num_positions, int64_t k, int64_t x_stride,
                                     cudaStream_t stream);
// gate_up[e]: [2 inter, k] e4m3, gate_up_scale[e]: [ceil(2 inter / 128), ceil(k / 128)];
// x_perm: [*, x_stride] and act_perm: [*, act_stride] bf16 * 2^64, act_stride = moe_perm_stride(inter).
// max_tokens: the most positions one expert may hold (the batch size: a token's experts are distinct);
// it only picks the kernel's tile count, any count is computed right.
// 16-byte weight loads when k % 16 == 0 (every expert's w 16-byte aligned), else byte loads.
cudaError_t launch_moe_grouped_gate_up_silu(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* gate_up,
                                            const float* const* gate_up_scale, const int32_t* num_active,
                                            const int32_t* active_expert, const int32_t* active_begin,
                                            int64_t max_active, uint16_t* act_perm, int64_t act_stride,
                                            int64_t inter, int64_t k, int64_t max_tokens, cudaStream_t stream);
// w[e]: [n, k] e4m3, w_scale[e]: [ceil(n / 128), ceil(k / 128)]; y_perm: [*, n] fp32.
cudaError_t launch_moe_grouped_gemv(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                                    const float* const* w_scale, const int32_t* num_active,
                                    const int32_t* active_expert, const int32_t* active_begin, int64_t max_active,
                                    float* y_perm, int64_t n, int64_t k, int64_t max_tokens, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
