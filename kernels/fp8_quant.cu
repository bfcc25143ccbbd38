#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "kernels/fp8_quant.hpp"

// One warp per (token, K block): lane l holds channels l, l + 32, l + 64, l + 96 of the block
// (coalesced loads and byte stores), a warp max, then the scaled conversion.
namespace troupe::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float load_x(const float* p) { return *p; }
__device__ __forceinline__ float load_x(const uint16_t* p) { return __uint_as_float(uint32_t(*p) << 16); }

template <typename XT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    fp8_quant_kernel(const XT* __restrict__ x, uint8_t* __restrict__ x_fp8, float* __restrict__ x_scale, int64_t m,
                     int64_t k, int64_t num_kb) {
  const int64_t group = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (group >= m * num_kb) return;
  const int lane = int(threadIdx.x % 32);
  const int64_t t = group / num_kb, kb = group % num_kb;
  const int64_t begin = kb * kFp8BlockSize;
  float v[4];
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t i = begin + lane + 32 * j;
    v[j] = i < k ? load_x(x + t * k + i) : 0.0f;
    amax = fmaxf(amax, fabsf(v[j]));
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  amax = fmaxf(amax, kFp8MinAmax);
  const float inv = 448.0f / amax;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t i = begin + lane + 32 * j;
    if (i < k) x_fp8[t * k + i] = uint8_t(__nv_cvt_float_to_fp8(v[j] * inv, __NV_SATFINITE, __NV_E4M3));
  }
  if (lane == 0) x_scale[kb * m + t] = amax / 448.0f;
}

template <typename XT>
cudaError_t launch(const XT* x, uint8_t* x_fp8, float* x_scale, int64_t m, int64_t k, cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  if (m < 0 || k <= 0 || !x || !x_fp8 || !x_scale) return cudaErrorInvalidValue;
  const int64_t num_kb = fp8_num_blocks(k);
  const int64_t blocks = (m * num_kb + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > INT32_MAX) return cudaErrorInvalidValue;
  fp8_quant_kernel<<<unsigned(blocks), kWarpsPerBlock * 32, 0, stream>>>(x, x_fp8, x_scale, m, k, num_kb);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_fp8_quant_f32(const float* x, uint8_t* x_fp8, float* x_scale, int64_t m, int64_t k,
                                 cudaStream_t stream) {
  return launch(x, x_fp8, x_scale, m, k, stream);
}

cudaError_t launch_fp8_quant_bf16(const uint16_t* x, uint8_t* x_fp8, float* x_scale, int64_t m, int64_t k,
                                  cudaStream_t stream) {
  return launch(x, x_fp8, x_scale, m, k, stream);
}

}  // namespace troupe::kernels
