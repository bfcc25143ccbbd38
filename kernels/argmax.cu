// The greedy argmax kernel (argmax.hpp).
#include <cfloat>
#include <cstdint>

#include "kernels/argmax.hpp"
#include "kernels/cuda_common.cuh"

namespace troupe::kernels {
namespace {

__global__ void argmax_kernel(const float* logits, int32_t* out, int64_t vocab) {
  __shared__ float best_value[kThreads];
  __shared__ int32_t best_index[kThreads];
  const float* row = logits + blockIdx.x * vocab;
  float value = -FLT_MAX;
  int32_t index = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    if (row[i] > value) {
      value = row[i];
      index = int32_t(i);
    }
  }
  best_value[threadIdx.x] = value;
  best_index[threadIdx.x] = index;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const float other = best_value[threadIdx.x + stride];
      const int32_t other_index = best_index[threadIdx.x + stride];
      if (other > best_value[threadIdx.x] || (other == best_value[threadIdx.x] && other_index < best_index[threadIdx.x])) {
        best_value[threadIdx.x] = other;
        best_index[threadIdx.x] = other_index;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = best_index[0];
}

}  // namespace

cudaError_t launch_argmax_f32(const float* logits, int32_t* out, int64_t rows, int64_t vocab, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (bad_rows(rows) || vocab <= 0) return cudaErrorInvalidValue;
  argmax_kernel<<<unsigned(rows), kThreads, 0, stream>>>(logits, out, vocab);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
