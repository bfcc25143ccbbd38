#pragma once
// MLA prefill in the expanded form, one sequence at a time (as transformers computes it):
//   1. gather: the sequence's cached entries (mla_decode.hpp's latent cache layout) into dense
//      latent [ctx, kv_lora] and k_pe [ctx, rope] fp32;
//   2. the caller expands: kv = latent @ kv_b_proj^T, [ctx, H * (nope + v_dim)] (per head
//      [k_nope | v]);
//   3. causal attention of the sequence's num_new last tokens: k_j = [k_nope_j,h | k_pe_j],
//      v_j = v_j,h; query i sits at position ctx - num_new + i and sees keys [0, that position].
// Three layers: the kernels (mla_prefill.cu: gather one block per position; attention one block per
// (query, head), 8 warps splitting the keys with an online softmax, as paged_attention.cu), these
// launchers, and the CPU references (mla_prefill_ref.cpp: fp32 dots, fp64 softmax sums).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU references. cache: [num_blocks, block_size, 1, kv_lora + rope] fp32 or bf16 bits; table: the
// sequence's block ids; latent: [ctx, kv_lora]; k_pe: [ctx, rope].
void mla_gather_latent_ref(const float* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                           int64_t kv_lora, int64_t rope, float* latent, float* k_pe);
void mla_gather_latent_ref(const uint16_t* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                           int64_t kv_lora, int64_t rope, float* latent, float* k_pe);
// q: [num_new, H, nope + rope]; kv: [ctx, H * (nope + v_dim)]; k_pe: [ctx, rope]; out: [num_new, H, v_dim].
void mla_prefill_attention_ref(const float* q, const float* kv, const float* k_pe, int64_t num_new, int64_t ctx,
                               int64_t num_heads, int64_t nope, int64_t rope, int64_t v_dim, float scale, float* out);
// The causal softmax between the backend's two prefill products (scores = q k^T * scale by cuBLAS,
// then probabilities @ v): s: [num_rows, ctx], row r is query i = r % num_new at position
// ctx - num_new + i; in place, keys [0, that position] get softmax(s), the later ones 0.
void causal_softmax_ref(float* s, int64_t num_rows, int64_t num_new, int64_t ctx);

#ifdef TROUPE_HAVE_CUDA
// nope + rope <= 256 and v_dim <= 256.
bool mla_prefill_supports(int64_t nope, int64_t rope, int64_t v_dim);
// Device pointers, shapes as the references; ctx == 0 or num_new == 0 does nothing.
cudaError_t launch_mla_gather_latent_f32(const float* cache, const int32_t* table, int64_t block_size, int64_t ctx,
                                         int64_t kv_lora, int64_t rope, float* latent, float* k_pe,
                                         cudaStream_t stream);
cudaError_t launch_mla_gather_latent_f32(const uint16_t* cache, const int32_t* table, int64_t block_size,
                                         int64_t ctx, int64_t kv_lora, int64_t rope, float* latent, float* k_pe,
                                         cudaStream_t stream);
// num_new <= ctx; unsupported dims give cudaErrorInvalidValue.
cudaError_t launch_mla_prefill_attention_f32(const float* q, const float* kv, const float* k_pe, int64_t num_new,
                                             int64_t ctx, int64_t num_heads, int64_t nope, int64_t rope,
                                             int64_t v_dim, float scale, float* out, cudaStream_t stream);
// One block per row.
cudaError_t launch_causal_softmax_f32(float* s, int64_t num_rows, int64_t num_new, int64_t ctx, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
