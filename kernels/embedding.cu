// Embedding kernels (embedding.hpp): fp32 tables one block per token, threads over the row; bf16
// tables below.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/bf16_stream.cuh"
#include "kernels/cuda_common.cuh"
#include "kernels/embedding.hpp"

namespace troupe::kernels {
namespace {

__global__ void embedding_kernel(const int32_t* ids, const float* table, float* out, int64_t hidden) {
  const float* row = table + int64_t(ids[blockIdx.x]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[blockIdx.x * hidden + i] = row[i];
}

// bf16 tables: block (token, chunk) widens 8 values a thread of the chunk's kThreads * 8, with one
// 16-byte load where VEC (hidden % 8 == 0, table and out 16-byte aligned). One block a token
// looping over the row took 8 us at hidden 4,096 on the H200 (a load's round trip per pass), first
// in every decode step.
constexpr int kPerThread = 8;
template <bool VEC>
__global__ void embedding_bf16_kernel(const int32_t* ids, const __nv_bfloat16* table, float* out, int64_t hidden) {
  const int64_t i = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * kPerThread;
  if (i >= hidden) return;
  const __nv_bfloat16* row = table + int64_t(ids[blockIdx.x]) * hidden + i;
  float* dst = out + int64_t(blockIdx.x) * hidden + i;
  if constexpr (VEC) {
    float f[kPerThread];
    bf16_stream::widen8(__ldg(reinterpret_cast<const uint4*>(row)), f);
    reinterpret_cast<float4*>(dst)[0] = make_float4(f[0], f[1], f[2], f[3]);
    reinterpret_cast<float4*>(dst)[1] = make_float4(f[4], f[5], f[6], f[7]);
  } else {
    const int64_t count = hidden - i < kPerThread ? hidden - i : kPerThread;
    for (int64_t j = 0; j < count; ++j) dst[j] = __bfloat162float(row[j]);
  }
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
  const int64_t chunks = (hidden + kThreads * kPerThread - 1) / (kThreads * kPerThread);
  if (chunks > 65535) return cudaErrorInvalidValue;
  const dim3 grid{unsigned(n), unsigned(chunks)};
  const auto* t = reinterpret_cast<const __nv_bfloat16*>(table);
  if (hidden % kPerThread == 0 && reinterpret_cast<uintptr_t>(table) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0)
    embedding_bf16_kernel<true><<<grid, kThreads, 0, stream>>>(ids, t, out, hidden);
  else
    embedding_bf16_kernel<false><<<grid, kThreads, 0, stream>>>(ids, t, out, hidden);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
