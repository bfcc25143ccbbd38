// The KV cache write kernel (kv_write.hpp).
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/kv_write.hpp"

namespace troupe::kernels {
namespace {

// Cache entries are fp32, bf16 (rounded to nearest even) or fp8 (e4m3(x / scale), saturated):
// store_kv's.
template <typename CacheT>
__global__ void write_kv_kernel(CacheT* cache, const float* x, const int32_t* slot_mapping, int64_t entry,
                                float scale) {
  const int64_t slot = slot_mapping[blockIdx.x];
  for (int64_t i = threadIdx.x; i < entry; i += blockDim.x)
    store_kv(cache + slot * entry + i, x[blockIdx.x * entry + i], scale);
}

template <typename CacheT>
cudaError_t launch_write_kv(CacheT* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                            float scale, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || entry <= 0 || !(scale > 0.0f)) return cudaErrorInvalidValue;
  write_kv_kernel<<<unsigned(n), kThreads, 0, stream>>>(cache, x, slot_mapping, entry, scale);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_write_kv_f32(float* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream) {
  return launch_write_kv(cache, x, slot_mapping, n, entry, 1.0f, stream);
}

cudaError_t launch_write_kv_f32(uint16_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream) {
  return launch_write_kv(reinterpret_cast<__nv_bfloat16*>(cache), x, slot_mapping, n, entry, 1.0f, stream);
}

cudaError_t launch_write_kv_f32(uint8_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                float scale, cudaStream_t stream) {
  return launch_write_kv(reinterpret_cast<__nv_fp8_e4m3*>(cache), x, slot_mapping, n, entry, scale, stream);
}

}  // namespace troupe::kernels
