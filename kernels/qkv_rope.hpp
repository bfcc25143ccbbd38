#pragma once
// One kernel after the fused QKV projection: rotary embedding of q and k, and the K/V cache
// writes. Replaces rope + write_kv(k) + write_kv(v) (three launches, and a q/k/v split before
// them). Three layers: the __global__ kernel (qkv_rope.cu), these raw-pointer launchers, and the
// CPU reference with the same formula as rope.hpp's (qkv_rope_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference, shapes as the launchers below (host pointers). The uint16_t overload writes a
// bf16 cache: rope(k) and v computed in fp32, then rounded to nearest even.
void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, float* k_cache, float* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half);
void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, uint16_t* k_cache, uint16_t* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half);
// The uint8_t overload writes an fp8 cache (kv_write.hpp): e4m3(rope(k) / k_scale) and
// e4m3(v / v_scale), saturated.
void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, uint8_t* k_cache, uint8_t* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half, float k_scale,
                           float v_scale);

#ifdef TROUPE_HAVE_CUDA
// For each token t (all pointers on the device):
//   q_out[t, h]                          = rope(qkv[t, h]),                 h < num_heads
//   k_cache[slot_mapping[t], h]          = rope(qkv[t, num_heads + h]),     h < num_kv_heads
//   v_cache[slot_mapping[t], h]          = qkv[t, num_heads + num_kv_heads + h]
// qkv: [n, (num_heads + 2 * num_kv_heads) * head_dim]; q_out: [n, num_heads, head_dim];
// caches: [num_slots, num_kv_heads, head_dim] (num_blocks * block_size slots); positions,
// slot_mapping: [n] i32; inv_freq: [half] with 2 * half <= head_dim (neox rotate_half on the first
// 2 * half dims, the rest copied). Slots are written as given, like launch_write_kv_f32.
// Bad sizes give cudaErrorInvalidValue; n == 0 launches nothing.
cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, float* k_cache, float* v_cache, float* q_out,
                                         int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                         int64_t half, cudaStream_t stream);
// The same into a bf16 cache (bf16 bits): rope(k) and v computed in fp32, then rounded to nearest
// even; q_out stays fp32.
cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, uint16_t* k_cache, uint16_t* v_cache,
                                         float* q_out, int64_t n, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t half, cudaStream_t stream);
// The same into an fp8 cache (e4m3 bytes of rope(k) / k_scale and v / v_scale, saturated);
// scales > 0.
cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, uint8_t* k_cache, uint8_t* v_cache,
                                         float* q_out, int64_t n, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t half, float k_scale, float v_scale,
                                         cudaStream_t stream);
#endif

}  // namespace troupe::kernels
