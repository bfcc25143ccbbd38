#pragma once
// Neox rotary embedding in place: for each token t and each q or k head, the pairs (i, i + half),
// i < half, rotate by angle = float(positions[t]) * inv_freq[i] (an fp32 product; cos and sin in
// double, rounded to fp32); dims past 2 * half are left as they are. The fused form after a QKV
// projection (rope + cache writes in one kernel) is qkv_rope.hpp's.
// Three layers: the __global__ kernel (rope.cu: one block per (token, head)), this raw-pointer
// launcher, and the CPU reference with the same formula (rope_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference. q: [n, num_q_heads, head_dim]; k: [n, num_k_heads, head_dim]; positions: [n];
// inv_freq: [half], 2 * half <= head_dim.
void rope_ref(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t n, int64_t num_q_heads,
              int64_t num_k_heads, int64_t head_dim, int64_t half);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as rope_ref. n == 0 does nothing; 2 * half > head_dim or more than 65535
// heads give cudaErrorInvalidValue.
cudaError_t launch_rope_f32(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t n,
                            int64_t num_q_heads, int64_t num_k_heads, int64_t head_dim, int64_t half,
                            cudaStream_t stream);
#endif

}  // namespace troupe::kernels
