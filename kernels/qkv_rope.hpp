#pragma once
// One kernel after the fused QKV projection: for Qwen3 an RMSNorm of each q and k head, then the
// rotary embedding of q and k, and the K/V cache writes. Replaces rope + write_kv(k) + write_kv(v)
// (three launches, and a q/k/v split before them; Qwen3 adds two rmsnorms). Three layers: the
// __global__ kernel (qkv_rope.cu), these raw-pointer launchers, and the CPU reference with the
// same formulas as rope.hpp's and CpuBackend::rmsnorm's (qkv_rope_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// Qwen3's per-head norm before rope: each q head (and each k head) becomes
// x / sqrt(mean over head_dim of x^2 + eps) * weight, weight: [head_dim] fp32. A null weight
// leaves those heads unnormed; v is never normed. Pointers on the launchers' side (device or host).
struct HeadNorms {
  const float* q_weight = nullptr;
  const float* k_weight = nullptr;
  float eps = 0.0f;
};

// CPU reference, shapes as the launchers below (host pointers). The inverse RMS of a head is
// CpuBackend::rmsnorm's (fp64 sum, 1 / sqrt in fp64 rounded to fp32), so the CPU backend, which
// runs this reference, equals its own rmsnorm + rope + write_kv bit for bit. The uint16_t overload
// writes a bf16 cache: rope(k) and v computed in fp32, then rounded to nearest even.
void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, float* k_cache, float* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half,
                           HeadNorms norms);
void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, uint16_t* k_cache, uint16_t* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half,
                           HeadNorms norms);
// The uint8_t overload writes an fp8 cache (kv_write.hpp): e4m3(rope(k) / k_scale) and
// e4m3(v / v_scale), saturated.
void qkv_rope_write_kv_ref(const float* qkv, const int32_t* positions, const float* inv_freq,
                           const int32_t* slot_mapping, uint8_t* k_cache, uint8_t* v_cache, float* q_out, int64_t n,
                           int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t half, float k_scale,
                           float v_scale, HeadNorms norms);

#ifdef TROUPE_HAVE_CUDA
// For each token t (all pointers on the device, norm(x) = x where a HeadNorms weight is null):
//   q_out[t, h]                          = rope(q_norm(qkv[t, h])),             h < num_heads
//   k_cache[slot_mapping[t], h]          = rope(k_norm(qkv[t, num_heads + h])), h < num_kv_heads
//   v_cache[slot_mapping[t], h]          = qkv[t, num_heads + num_kv_heads + h]
// qkv: [n, (num_heads + 2 * num_kv_heads) * head_dim]; q_out: [n, num_heads, head_dim];
// caches: [num_slots, num_kv_heads, head_dim] (num_blocks * block_size slots); positions,
// slot_mapping: [n] i32; inv_freq: [half] with 2 * half <= head_dim (neox rotate_half on the first
// 2 * half dims, the rest copied). Slots are written as given, like launch_write_kv_f32.
// The norms' inverse RMS is summed in fp32 (rsqrtf), a few ulp from the reference's. eps >= 0 when
// a norm weight is given. Bad sizes give cudaErrorInvalidValue; n == 0 launches nothing.
cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, float* k_cache, float* v_cache, float* q_out,
                                         int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                         int64_t half, HeadNorms norms, cudaStream_t stream);
// The same into a bf16 cache (bf16 bits): rope(k) and v computed in fp32, then rounded to nearest
// even; q_out stays fp32.
cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, uint16_t* k_cache, uint16_t* v_cache,
                                         float* q_out, int64_t n, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t half, HeadNorms norms, cudaStream_t stream);
// The same into an fp8 cache (e4m3 bytes of rope(k) / k_scale and v / v_scale, saturated);
// scales > 0.
cudaError_t launch_qkv_rope_write_kv_f32(const float* qkv, const int32_t* positions, const float* inv_freq,
                                         const int32_t* slot_mapping, uint8_t* k_cache, uint8_t* v_cache,
                                         float* q_out, int64_t n, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t half, float k_scale, float v_scale,
                                         HeadNorms norms, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
