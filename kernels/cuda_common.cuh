#pragma once
// Device helpers shared by the small kernel families (embedding, add_rmsnorm, elementwise, rope,
// kv_write, paged_attention, gather_rows, argmax): the block size, block sums, fp32/bf16 stores and
// loads. NOTE: everything here has internal linkage (an unnamed namespace), so each .cu that includes
// it gets its own copy, as when these lived in one file; include it from .cu files only.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace troupe::kernels {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t count) { return unsigned((count + kThreads - 1) / kThreads); }

bool bad_rows(int64_t rows) { return rows < 0 || rows > INT32_MAX; }

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of kBlockThreads threads; every thread gets the total.
template <int kBlockThreads = kThreads>
__device__ float block_sum(float v) {
  __shared__ float partial[kBlockThreads / 32];
  __shared__ float total;
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x < kBlockThreads / 32 ? partial[threadIdx.x] : 0.0f;
  if (threadIdx.x < 32) v = warp_sum(v);
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}

// Output stores: fp32 as is, bf16 rounded to nearest even (host_bf16.hpp's host_f32_to_bf16 for
// every non-NaN value).
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
// Four values at p[4 i .. 4 i + 3]: one 16-byte (fp32) or 8-byte (bf16) store.
__device__ __forceinline__ void store4(float* p, int64_t i, float4 v) { reinterpret_cast<float4*>(p)[i] = v; }
__device__ __forceinline__ void store4(__nv_bfloat16* p, int64_t i, float4 v) {
  const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 bits;
  bits.x = *reinterpret_cast<const uint32_t*>(&lo);
  bits.y = *reinterpret_cast<const uint32_t*>(&hi);
  reinterpret_cast<uint2*>(p)[i] = bits;
}

// A cache element as fp32 (bf16 and e4m3 widen exactly; an e4m3 cache's scale is the caller's).
__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load(const __nv_fp8_e4m3* p) { return static_cast<float>(*p); }

// A KV cache element: fp32 and bf16 as store() (those caches have no scale); an fp8 cache
// (runtime/kv_cache.hpp) holds e4m3(v / scale), nearest even, saturated to +-448 (host_fp8.hpp's
// host_f32_to_e4m3 of the same quotient).
__device__ __forceinline__ void store_kv(float* p, float v, float) { *p = v; }
__device__ __forceinline__ void store_kv(__nv_bfloat16* p, float v, float) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_kv(__nv_fp8_e4m3* p, float v, float scale) {
  p->__x = __nv_cvt_float_to_fp8(v / scale, __NV_SATFINITE, __NV_E4M3);
}

}  // namespace
}  // namespace troupe::kernels
