// Embedding kernels (embedding.hpp): one block per token, threads over the row.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/embedding.hpp"

namespace troupe::kernels {
namespace {

__global__ void embedding_kernel(const int32_t* ids, const float* table, float* out, int64_t hidden) {
  const float* row = table + int64_t(ids[blockIdx.x]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[blockIdx.x * hidden + i] = row[i];
}

__global__ void embedding_bf16_kernel(const int32_t* ids, const __nv_bfloat16* table, float* out, int64_t hidden) {
  const __nv_bfloat16* row = table + int64_t(ids[blockIdx.x]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[blockIdx.x * hidden + i] = __bfloat162float(row[i]);
}

}  // namespace

cudaError_t launch_embedding_f32(const int32_t* ids, const float* table, float* out, int64_t n, int64_t hidden,
                                 cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || hidden <= 0) return cudaErrorInvalidValue;
  embedding_kernel<<<unsigned(n), kThreads, 0, stream>>>(ids, table, out, hidden);
  return cudaGetLastError();
}

cudaError_t launch_embedding_bf16(const int32_t* ids, const uint16_t* table, float* out, int64_t n, int64_t hidden,
                                  cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || hidden <= 0) return cudaErrorInvalidValue;
  embedding_bf16_kernel<<<unsigned(n), kThreads, 0, stream>>>(ids, reinterpret_cast<const __nv_bfloat16*>(table), out,
                                                              hidden);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
