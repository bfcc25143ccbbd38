// The KV cache write kernel (kv_write.hpp).
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/kv_write.hpp"

namespace troupe::kernels {
namespace {

// Cache entries are fp32 or bf16 (rounded to nearest even by store()).
template <typename CacheT>
__global__ void write_kv_kernel(CacheT* cache, const float* x, const int32_t* slot_mapping, int64_t entry) {
  const int64_t slot = slot_mapping[blockIdx.x];
  for (int64_t i = threadIdx.x; i < entry; i += blockDim.x) store(cache + slot * entry + i, x[blockIdx.x * entry + i]);
}

template <typename CacheT>
cudaError_t launch_write_kv(CacheT* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || entry <= 0) return cudaErrorInvalidValue;
  write_kv_kernel<<<unsigned(n), kThreads, 0, stream>>>(cache, x, slot_mapping, entry);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_write_kv_f32(float* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream) {
  return launch_write_kv(cache, x, slot_mapping, n, entry, stream);
}

cudaError_t launch_write_kv_f32(uint16_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry,
                                cudaStream_t stream) {
  return launch_write_kv(reinterpret_cast<__nv_bfloat16*>(cache), x, slot_mapping, n, entry, stream);
}

}  // namespace troupe::kernels
