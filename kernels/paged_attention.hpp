#pragma once
// Causal paged attention, the fallback kernel (shapes the split-KV decode and tensor-core prefill
// kernels don't take, e.g. head_dim 48), and the CPU reference every attention kernel is compared
// with (attention_decode.hpp, attention_prefill.hpp too).
// Token t (position positions[t], sequence seq_of_token[t]) attends to its sequence's cached
// positions [0, positions[t]]: out[t, h] = sum_j softmax_j(scale * q[t, h] . k[j, h / group]) v[j, h / group],
// group = num_heads / num_kv_heads (GQA). The cache layout is runtime/kv_cache.hpp's:
// [num_blocks, block_size, num_kv_heads, head_dim], position j of a sequence in slot
// block_tables[seq, j / block_size] * block_size + j % block_size.
// Three layers: the __global__ kernel (paged_attention.cu: one block per (token, head), 8 warps
// splitting the context with an online softmax), these raw-pointer launchers, and the CPU
// reference (paged_attention_ref.cpp: fp32 dot products, fp64 softmax sums).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference. q, out: [n, num_heads, head_dim] fp32; caches: [num_blocks, block_size,
// num_kv_heads, head_dim] fp32 or bf16 bits (widened exactly); positions, seq_of_token: [n];
// block_tables: [num_seqs, max_blocks]. Reads only the cached positions each token sees.
void paged_attention_ref(const float* q, const float* k_cache, const float* v_cache, const int32_t* positions,
                         const int32_t* seq_of_token, const int32_t* block_tables, int64_t max_blocks,
                         int64_t block_size, int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                         float scale, float* out);
void paged_attention_ref(const float* q, const uint16_t* k_cache, const uint16_t* v_cache, const int32_t* positions,
                         const int32_t* seq_of_token, const int32_t* block_tables, int64_t max_blocks,
                         int64_t block_size, int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                         float scale, float* out);
// An fp8 cache (runtime/kv_cache.hpp): element e of K reads as e4m3_to_f32(e) * k_scale, of V as
// e4m3_to_f32(e) * v_scale; then the formula above.
void paged_attention_ref(const float* q, const uint8_t* k_cache, const uint8_t* v_cache, const int32_t* positions,
                         const int32_t* seq_of_token, const int32_t* block_tables, int64_t max_blocks,
                         int64_t block_size, int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                         float scale, float k_scale, float v_scale, float* out);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as paged_attention_ref. head_dim <= 256 and num_heads % num_kv_heads == 0
// (else cudaErrorInvalidValue); n == 0 does nothing.
cudaError_t launch_paged_attention_f32(const float* q, const float* k_cache, const float* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                       float scale, float* out, cudaStream_t stream);
// The same over a bf16 cache (bf16 bits); q and out stay fp32.
cudaError_t launch_paged_attention_f32(const float* q, const uint16_t* k_cache, const uint16_t* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                       float scale, float* out, cudaStream_t stream);
// The same over an fp8 cache (e4m3 bytes): k_scale folds into the score scale, v_scale multiplies
// the output (the softmax weights sum to 1), the same sums as the reference's up to fp32 rounding.
cudaError_t launch_paged_attention_f32(const float* q, const uint8_t* k_cache, const uint8_t* v_cache,
                                       const int32_t* positions, const int32_t* seq_of_token,
                                       const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                       int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                       float scale, float k_scale, float v_scale, float* out, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
