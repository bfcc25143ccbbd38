#pragma once
// KV cache writes: cache[slot_mapping[t], :] = x[t, :], rows of `entry` = num_kv_heads * head_dim
// elements (the paged layout of runtime/kv_cache.hpp seen as [num_slots, entry]). The cache is fp32,
// bf16 (bits, rounded to nearest even: the cache dtype with bf16 weights) or fp8 (--kv-cache-dtype
// fp8: e4m3 bytes of x / scale, nearest even, saturated to +-448; scale is the cache tensor's
// per-tensor k_scale or v_scale). The fused rope + write after a QKV projection is qkv_rope.hpp's.
// Three layers: the __global__ kernel (kv_write.cu: one block per token), these raw-pointer
// launchers, and the CPU reference with the same formula (kv_write_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference. cache: [num_slots, entry]; x: [n, entry]; slot_mapping: [n]. Slots are written as
// given; the others are untouched.
void write_kv_ref(float* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry);
void write_kv_ref(uint16_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry);
void write_kv_ref(uint8_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry, float scale);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as write_kv_ref. n == 0 does nothing; n > INT32_MAX or entry <= 0 give
// cudaErrorInvalidValue. The uint16_t overload writes a bf16 cache.
cudaError_t launch_write_kv_f32(float* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream);
cudaError_t launch_write_kv_f32(uint16_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream);
// An fp8 cache (e4m3 bytes); scale > 0 (else cudaErrorInvalidValue).
cudaError_t launch_write_kv_f32(uint8_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                float scale, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
