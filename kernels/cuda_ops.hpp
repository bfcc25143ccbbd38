#pragma once
// Launchers of the CUDA backend's fp32 kernels (cuda_ops.cu). Raw device pointers, sizes and a
// stream in; cudaError_t out. The CPU references are CpuBackend's ops (backends/cpu_backend.cpp),
// which tests/gpu/cuda_backend_ops_test.cpp compares against op by op.
#include <cstdint>

#include <cuda_runtime_api.h>

namespace troupe::kernels {

// out[t, :] = table[ids[t], :]. ids: [n]; table: [vocab, hidden]; out: [n, hidden].
cudaError_t launch_embedding_f32(const int32_t* ids, const float* table, float* out, int64_t n, int64_t hidden,
                                 cudaStream_t stream);
// residual += x; out = rmsnorm(residual) * weight. All [n, hidden]; weight [hidden].
cudaError_t launch_add_rmsnorm_f32(float* residual, const float* x, const float* weight, float* out, int64_t n,
                                   int64_t hidden, float eps, cudaStream_t stream);
// The same with out bf16 bits (rounded to nearest even; must not overlap residual). The wide
// kernel needs residual, x, weight and out 16-byte aligned, hidden % 4 == 0 and 1024 <= hidden <= 16384.
cudaError_t launch_add_rmsnorm_f32_to_bf16(float* residual, const float* x, const float* weight, uint16_t* out,
                                           int64_t n, int64_t hidden, float eps, cudaStream_t stream);
// out[r, c] += bias[c]. out: [rows, cols].
cudaError_t launch_add_bias_f32(float* out, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// Neox rotary embedding in place on the first 2 * half dims of each head.
cudaError_t launch_rope_f32(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t n,
                            int64_t num_q_heads, int64_t num_k_heads, int64_t head_dim, int64_t half,
                            cudaStream_t stream);
// cache[slot_mapping[t], :] = x[t, :]; rows of `entry` elements. The uint16_t overload writes a
// bf16 cache (bf16 bits, rounded to nearest even), the cache dtype with bf16 weights.
cudaError_t launch_write_kv_f32(float* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream);
cudaError_t launch_write_kv_f32(uint16_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream);
// Causal paged attention: token t (position positions[t], sequence seq_of_token[t]) attends to
// its sequence's cached positions [0, positions[t]]. q, out: [n, num_heads, head_dim]; caches:
// [num_blocks, block_size, num_kv_heads, head_dim]; block_tables: [num_seqs, max_blocks].
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
// out = silu(gate) * up; out = a + b. Elementwise over `count` floats.
cudaError_t launch_silu_and_mul_f32(const float* gate, const float* up, float* out, int64_t count, cudaStream_t stream);
cudaError_t launch_add_f32(const float* a, const float* b, float* out, int64_t count, cudaStream_t stream);
// out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i]. gate_up: [n, 2 * inter]; out: [n, inter].
cudaError_t launch_silu_and_mul_packed_f32(const float* gate_up, float* out, int64_t n, int64_t inter,
                                           cudaStream_t stream);
// The same with out bf16 bits (rounded to nearest even), the input of the down projection.
cudaError_t launch_silu_and_mul_packed_f32_to_bf16(const float* gate_up, uint16_t* out, int64_t n, int64_t inter,
                                                   cudaStream_t stream);
// out[i, :] = x[rows[i], :].
cudaError_t launch_gather_rows_f32(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim,
                                   cudaStream_t stream);
// The same over bf16 rows (bits copied as they are).
cudaError_t launch_gather_rows_bf16(const uint16_t* x, const int32_t* rows, uint16_t* out, int64_t num_rows,
                                    int64_t dim, cudaStream_t stream);
// out[i] = bf16(x[i]), round to nearest even.
cudaError_t launch_f32_to_bf16(const float* x, uint16_t* out, int64_t count, cudaStream_t stream);
// Embedding from a bf16 table into fp32 rows.
cudaError_t launch_embedding_bf16(const int32_t* ids, const uint16_t* table, float* out, int64_t n, int64_t hidden,
                                  cudaStream_t stream);
// out[r] = argmax over logits[r, :] (first index on ties).
cudaError_t launch_argmax_f32(const float* logits, int32_t* out, int64_t rows, int64_t vocab, cudaStream_t stream);

}  // namespace troupe::kernels
