#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "kernels/fp8_quant.hpp"
#include "kernels/fp8_quant_lanes.cuh"

// On fp8_quant_lanes.cuh's lanes: one warp per (token, two K blocks), 16-byte loads where the
// rows allow; token t's scales are the one segment [0, m) of the lanes' layout: x_scale[kb m + t].
namespace troupe::kernels {
namespace {

using namespace fp8_lanes;

template <typename XT, bool kVec>
__global__ void __launch_bounds__(kFp8QuantWarpsPerBlock * 32)
    fp8_quant_kernel(const XT* __restrict__ x, uint8_t* __restrict__ x_fp8, float* __restrict__ x_scale, int64_t m,
                     int64_t k, int64_t num_kb) {
  WarpWork w;
  if (!warp_work(m, num_kb, w)) return;
  float v[kLaneChannels];
  load8<kVec>(x + w.p * k, w.c, k, v);
  quantize8<kVec>(v, int(threadIdx.x % 32), w.p, w.kb, w.c, k, num_kb, 0, m, x_fp8, x_scale);
}

template <typename XT>
cudaError_t launch(const XT* x, uint8_t* x_fp8, float* x_scale, int64_t m, int64_t k, cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  if (m < 0 || k <= 0 || !x || !x_fp8 || !x_scale) return cudaErrorInvalidValue;
  const int64_t num_kb = fp8_num_blocks(k), blocks = grid_blocks(m, num_kb);
  if (blocks > INT32_MAX) return cudaErrorInvalidValue;
  if (vector_path(x, x_fp8, k))
    fp8_quant_kernel<XT, true><<<unsigned(blocks), kFp8QuantWarpsPerBlock * 32, 0, stream>>>(x, x_fp8, x_scale, m, k, num_kb);
  else
    fp8_quant_kernel<XT, false><<<unsigned(blocks), kFp8QuantWarpsPerBlock * 32, 0, stream>>>(x, x_fp8, x_scale, m, k, num_kb);
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
