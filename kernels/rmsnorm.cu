#include <cuda_bf16.h>

#include "kernels/dependent_launch.cuh"
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

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
// Round to nearest even (runtime/dtype.hpp's f32_to_bf16 for every non-NaN value).
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// One block per token row; OutT float or __nv_bfloat16.
template <typename OutT>
__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ weight, OutT* out,
                               int64_t hidden, float eps) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const float* row = x + blockIdx.x * hidden;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads) sum_sq += row[i] * row[i];
  const float scale = rsqrtf(block_sum(sum_sq) / float(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads)
    store(out + blockIdx.x * hidden + i, row[i] * scale * weight[i]);
}

}  // namespace

cudaError_t launch_rmsnorm_f32(const float* x, const float* weight, float* out, int64_t num_tokens,
                               int64_t hidden, float eps, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || hidden <= 0 || num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  return launch_dependent(rmsnorm_kernel<float>, dim3(unsigned(num_tokens)), dim3(kThreads), 0, stream, x, weight, out,
                          hidden, eps);
}

cudaError_t launch_rmsnorm_f32_to_bf16(const float* x, const float* weight, uint16_t* out, int64_t num_tokens,
                                       int64_t hidden, float eps, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || hidden <= 0 || num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  return launch_dependent(rmsnorm_kernel<__nv_bfloat16>, dim3(unsigned(num_tokens)), dim3(kThreads), 0, stream, x,
                          weight, reinterpret_cast<__nv_bfloat16*>(out), hidden, eps);
}

}  // namespace troupe::kernels
