// The fused residual add + RMSNorm kernels (rmsnorm.hpp): one 256-thread block per row, or a wide
// 1024-thread float4 kernel that keeps the new residual in registers between its two passes.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/rmsnorm.hpp"

namespace troupe::kernels {
namespace {

template <typename OutT>
__global__ void add_rmsnorm_kernel(float* residual, const float* x, const float* weight, OutT* out, int64_t hidden,
                                   float eps) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  float* r = residual + blockIdx.x * hidden;
  const float* xr = x + blockIdx.x * hidden;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
    const float v = r[i] + xr[i];
    r[i] = v;
    sum_sq += v * v;
  }
  const float scale = rsqrtf(block_sum(sum_sq) / float(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads)
    store(out + blockIdx.x * hidden + i, r[i] * scale * weight[i]);
}

// The same for hidden % 4 == 0 and hidden <= 4 * 4 * kWideThreads: 1024 threads, float4 loads, each
// thread keeping its (at most 4) vectors of the new residual in registers between the two passes;
// out stores 4 values at once (16 bytes fp32, 8 bytes bf16).
constexpr int kWideThreads = 1024;
constexpr int kWideVectors = 4;

template <typename OutT>
__global__ void __launch_bounds__(kWideThreads) add_rmsnorm_wide_kernel(float* residual, const float* x,
                                                                        const float* weight, OutT* out,
                                                                        int64_t hidden, float eps) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const int64_t row = blockIdx.x, vectors = hidden / 4;
  float4* r = reinterpret_cast<float4*>(residual + row * hidden);
  const float4* xr = reinterpret_cast<const float4*>(x + row * hidden);
  float4 kept[kWideVectors];
  float sum_sq = 0.0f;
#pragma unroll
  for (int j = 0; j < kWideVectors; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * kWideThreads;
    if (i < vectors) {
      const float4 a = r[i], b = xr[i];
      const float4 v = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
      r[i] = v;
      kept[j] = v;
      sum_sq += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  }
  const float scale = rsqrtf(block_sum<kWideThreads>(sum_sq) / float(hidden) + eps);
  const float4* w = reinterpret_cast<const float4*>(weight);
  OutT* o = out + row * hidden;
#pragma unroll
  for (int j = 0; j < kWideVectors; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * kWideThreads;
    if (i < vectors) {
      const float4 v = kept[j], g = w[i];
      store4(o, i, make_float4(v.x * scale * g.x, v.y * scale * g.y, v.z * scale * g.z, v.w * scale * g.w));
    }
  }
}

template <typename OutT>
cudaError_t launch_add_rmsnorm(float* residual, const float* x, const float* weight, OutT* out, int64_t n,
                               int64_t hidden, float eps, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || hidden <= 0) return cudaErrorInvalidValue;
  const bool aligned = (reinterpret_cast<uintptr_t>(residual) | reinterpret_cast<uintptr_t>(x) |
                        reinterpret_cast<uintptr_t>(weight) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  if (aligned && hidden % 4 == 0 && hidden / 4 <= int64_t(kWideVectors) * kWideThreads && hidden >= 1024)
    return launch_dependent(add_rmsnorm_wide_kernel<OutT>, dim3(unsigned(n)), dim3(kWideThreads), 0, stream, residual,
                            x, weight, out, hidden, eps);
  return launch_dependent(add_rmsnorm_kernel<OutT>, dim3(unsigned(n)), dim3(kThreads), 0, stream, residual, x, weight,
                          out, hidden, eps);
}

}  // namespace

cudaError_t launch_add_rmsnorm_f32(float* residual, const float* x, const float* weight, float* out, int64_t n,
                                   int64_t hidden, float eps, cudaStream_t stream) {
  return launch_add_rmsnorm(residual, x, weight, out, n, hidden, eps, stream);
}

cudaError_t launch_add_rmsnorm_f32_to_bf16(float* residual, const float* x, const float* weight, uint16_t* out,
                                           int64_t n, int64_t hidden, float eps, cudaStream_t stream) {
  return launch_add_rmsnorm(residual, x, weight, reinterpret_cast<__nv_bfloat16*>(out), n, hidden, eps, stream);
}

}  // namespace troupe::kernels
