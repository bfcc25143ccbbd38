#pragma once
// The two weight products of the absorbed MLA decode (kernels/mla_decode.hpp has the whole formula)
// for decode-sized batches with a bf16 kv_b_proj weight [H * (nope + v_dim), kv_lora] row-major,
// per head h the nope rows of W_UK_h, then the v_dim rows of W_UV_h:
//   absorb:   q_abs[i, h, c]          = sum_{k < nope} bf16(q[t, h, k]) * W_UK_h[k, c]   (c < kv_lora)
//             q_abs[i, h, kv_lora + r] = q[t, h, nope + r]                               (r < rope, q_pe as is)
//   unabsorb: out[t, h, c]            = sum_{j < kv_lora} bf16(o_lat[i, h, j]) * W_UV_h[c, j]   (c < v_dim)
// for the i-th computed token, t = tokens[i] (tokens nullptr: t = i). bf16() rounds to nearest
// even, as the cuBLAS path (f32_to_bf16, then bf16 GEMMs with fp32 sums) rounds its inputs, so the
// numerics do not depend on the path; the products are exact in fp32 and summed in fp32.
// At n <= 8 tokens both products are bound by reading the weight once (16.8 MB each at R1's 128
// heads x 128 x 512), where cuBLAS's strided-batched GEMM with N = n is not. Kernels (mla_absorb.cu):
//   absorb: a warp owns one head's 32 latent columns (4 lanes x 8 columns, one 16-byte load each)
//     and all its nope rows, 8 lane groups taking every 8th row, so each load instruction reads
//     8 rows x 64 contiguous bytes; the warp's sums meet by a reduce-scatter over the lane groups
//     (each lane ends with one column, all tokens); q_nope of the head staged once per CTA (4 warps,
//     128 columns) in shared memory, rounded to bf16; the rope part copied by the head's first CTA.
//   unabsorb: a warp owns 4 rows of W_UV_h and all n tokens, lane l the 8 columns at 8 l of each
//     256-column chunk; a CTA (8 warps, 32 rows of one head) stages the head's o_lat rounded to bf16
//     in shared memory; the sums meet by a reduce-scatter over the lanes (gemv.cu's).
// Both read weights before waiting for the kernel before them (dependent_launch.cuh): the weight
// stream starts while it finishes. The tokens argument lets a mixed step skip gather and scatter.
// Three layers: the __global__ kernels (mla_absorb.cu), these launchers, the CPU references
// (mla_absorb_ref.cpp, fp64 sums of the same rounded inputs).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

constexpr int64_t kMlaAbsorbMaxTokens = 8;
constexpr int64_t kMlaAbsorbMaxNope = 256;  // q_nope rows staged in shared memory
constexpr int64_t kMlaAbsorbMaxLora = 512;  // o_lat columns staged in shared memory
constexpr int64_t kMlaAbsorbMaxPartitions = 128;  // mla_decode.hpp's kMlaMaxPartitions

// Whether the launchers take these sizes: 1 <= n <= kMlaAbsorbMaxTokens, 1 <= nope <= 256,
// rope >= 0, v_dim >= 1, kv_lora a multiple of 8 in [8, 512], the weight 16-byte aligned.
inline bool mla_absorb_supports(const void* weight, int64_t n, int64_t nope, int64_t rope, int64_t kv_lora,
                                int64_t v_dim) {
  return n >= 1 && n <= kMlaAbsorbMaxTokens && nope >= 1 && nope <= kMlaAbsorbMaxNope && rope >= 0 && v_dim >= 1 &&
         kv_lora >= 8 && kv_lora <= kMlaAbsorbMaxLora && kv_lora % 8 == 0 && weight != nullptr &&
         reinterpret_cast<uintptr_t>(weight) % 16 == 0;
}

// CPU references in fp64 from the same bf16 weight bits and bf16-rounded activations.
// q: [*, H, nope + rope] (rows tokens[i], or i); weight: [H * (nope + v_dim), kv_lora] bf16 bits;
// q_abs: [n, H, kv_lora + rope].
void mla_absorb_q_bf16_ref(const float* q, const int32_t* tokens, const uint16_t* weight, double* q_abs, int64_t n,
                           int64_t num_heads, int64_t nope, int64_t rope, int64_t kv_lora, int64_t v_dim);
// o_lat: [n, H, kv_lora]; out: [*, H, v_dim], rows tokens[i] (or i) written, the others untouched.
void mla_unabsorb_out_bf16_ref(const float* o_lat, const int32_t* tokens, const uint16_t* weight, double* out,
                               int64_t n, int64_t num_heads, int64_t nope, int64_t kv_lora, int64_t v_dim);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as the references; q_abs and out must not overlap the inputs. n == 0
// does nothing; sizes mla_absorb_supports refuses give cudaErrorInvalidValue, nothing launched.
cudaError_t launch_mla_absorb_q_bf16(const float* q, const int32_t* tokens, const uint16_t* weight, float* q_abs,
                                     int64_t n, int64_t num_heads, int64_t nope, int64_t rope, int64_t kv_lora,
                                     int64_t v_dim, cudaStream_t stream);
cudaError_t launch_mla_unabsorb_out_bf16(const float* o_lat, const int32_t* tokens, const uint16_t* weight,
                                         float* out, int64_t n, int64_t num_heads, int64_t nope, int64_t kv_lora,
                                         int64_t v_dim, cudaStream_t stream);
// The same with o_lat merged first from mla_decode's split-KV partials (the workspace that
// launch_mla_decode_f32 leaves with merge_partials false: [n, H, num_partitions, kv_lora] partial
// outputs, then maxima and sums [n, H, num_partitions] each, num_partitions in 2..128) by the
// combine kernel's arithmetic in the same order, so `out` is bit for bit what the combine then
// launch_mla_unabsorb_out_bf16 give, one launch fewer (the staging of o_lat does the merge: each
// CTA's head, from L2). cudaErrorInvalidValue as above, or for num_partitions outside 2..128.
cudaError_t launch_mla_unabsorb_partials_bf16(const float* workspace, int64_t num_partitions, const int32_t* tokens,
                                              const uint16_t* weight, float* out, int64_t n, int64_t num_heads,
                                              int64_t nope, int64_t kv_lora, int64_t v_dim, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
