#include "kernels/rmsnorm.hpp"

namespace troupe::kernels {
namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float value) {
  __shared__ float warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  value = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
  if (warp == 0)
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  __shared__ float total;
  if (threadIdx.x == 0) total = value;
  __syncthreads();
  return total;
}

// One block per token row.
__global__ void rmsnorm_f32_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                                   float* out, int64_t hidden, float eps) {
  const float* row = x + blockIdx.x * hidden;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads) sum_sq += row[i] * row[i];
  const float scale = rsqrtf(block_sum(sum_sq) / float(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads)
    out[blockIdx.x * hidden + i] = row[i] * scale * weight[i];
}

}  // namespace

cudaError_t launch_rmsnorm_f32(const float* x, const float* weight, float* out, int64_t num_tokens,
                               int64_t hidden, float eps, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || hidden <= 0 || num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  rmsnorm_f32_kernel<<<unsigned(num_tokens), kThreads, 0, stream>>>(x, weight, out, hidden, eps);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
