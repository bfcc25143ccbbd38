#pragma once
// DeepSeek-V3's rope and latent cache write (runtime/backend.hpp's rope_interleaved and
// mla_write_latent):
//   rope_interleaved: per head, the last rotary = 2 * half dims r become, with c_i = cos(pos *
//     inv_freq[i]) * scale, s_i = sin(...) * scale (angle in fp32, cos/sin in fp64),
//     r'[i] = r[2i] c_i - r[2i+1] s_i,  r'[half + i] = r[2i+1] c_i + r[2i] s_i   (left de-interleaved)
//   mla_write_latent: cache[slot[t]] = [rmsnorm(latent) * weight | rope_interleaved(k_pe)] from
//     kv_a[t] = [latent (kv_lora) | k_pe (rotary)]; fp64 (reference) / fp32 (kernel) sum of squares,
//     out = x * (1 / sqrt(mean + eps)) * weight; a bf16 cache is written rounded to nearest even.
// Three layers: the kernels (mla_latent.cu: one block per (token, head) / per token), these
// launchers, and the CPU references (mla_latent_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU references. x: [n, num_heads, head_dim] in place; positions: [n]; inv_freq: [half].
void rope_interleaved_ref(float* x, const int32_t* positions, const float* inv_freq, int64_t n, int64_t num_heads,
                          int64_t head_dim, int64_t half, float scale);
// kv_a: [n, kv_lora + 2 half]; norm_weight: [kv_lora]; slots: [n]; cache: [num_slots, kv_lora + 2 half].
void mla_write_latent_ref(const float* kv_a, const float* norm_weight, float eps, const int32_t* positions,
                          const float* inv_freq, float scale, const int32_t* slots, int64_t n, int64_t kv_lora,
                          int64_t half, float* cache);
void mla_write_latent_ref(const float* kv_a, const float* norm_weight, float eps, const int32_t* positions,
                          const float* inv_freq, float scale, const int32_t* slots, int64_t n, int64_t kv_lora,
                          int64_t half, uint16_t* cache);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as the references. 2 * half <= head_dim; n == 0 does nothing.
cudaError_t launch_rope_interleaved_f32(float* x, const int32_t* positions, const float* inv_freq, int64_t n,
                                        int64_t num_heads, int64_t head_dim, int64_t half, float scale,
                                        cudaStream_t stream);
cudaError_t launch_mla_write_latent_f32(const float* kv_a, const float* norm_weight, float eps,
                                        const int32_t* positions, const float* inv_freq, float scale,
                                        const int32_t* slots, int64_t n, int64_t kv_lora, int64_t half, float* cache,
                                        cudaStream_t stream);
cudaError_t launch_mla_write_latent_f32(const float* kv_a, const float* norm_weight, float eps,
                                        const int32_t* positions, const float* inv_freq, float scale,
                                        const int32_t* slots, int64_t n, int64_t kv_lora, int64_t half,
                                        uint16_t* cache, cudaStream_t stream);
// Both in one launch (the decode step's MLA: one kernel boundary fewer): rope_interleaved of q
// [n, q_heads, q_head_dim] (its last 2 * half dims) and the cache write of kv_a, the same
// positions, inv_freq and scale for both, each as its launcher above computes it (the same device
// code). Takes 1 <= half <= 128 (the rope's one-warp-a-row kernel; R1: 32); cudaErrorInvalidValue
// otherwise, or for a null pointer, nothing launched; n == 0 does nothing.
cudaError_t launch_mla_rope_write_latent_f32(float* q, int64_t q_heads, int64_t q_head_dim, const float* kv_a,
                                             const float* norm_weight, float eps, const int32_t* positions,
                                             const float* inv_freq, float scale, const int32_t* slots, int64_t n,
                                             int64_t kv_lora, int64_t half, float* cache, cudaStream_t stream);
cudaError_t launch_mla_rope_write_latent_f32(float* q, int64_t q_heads, int64_t q_head_dim, const float* kv_a,
                                             const float* norm_weight, float eps, const int32_t* positions,
                                             const float* inv_freq, float scale, const int32_t* slots, int64_t n,
                                             int64_t kv_lora, int64_t half, uint16_t* cache, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
