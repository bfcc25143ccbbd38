#include <cuda_bf16.h>

#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/fp8_gemv_f16_tiles.cuh"

// The dense launch of fp8_gemv_f16_tiles.cuh's tile loop, tiles of 16 rows (RowTiles).
namespace troupe::kernels {
namespace {

using namespace f16_tiles;

// 96 registers: fp8_gemv_f16_tiles.cuh's comment on gemv_tiles says why.
template <typename XT, typename OT>
__global__ void __maxnreg__(96)
    fp8_gemv_f16_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                        OT* __restrict__ out, int m, int n, int k, int num_kb, int sharing) {
  gemv_tiles(x, k, w, w_scale, m, k, num_kb, sharing, RowTiles<OT, false>{out, n, 1.0f});
}

template <typename XT, typename OT>
cudaError_t launch_f16(const XT* x, const uint8_t* w, const float* w_scale, OT* out, int64_t m, int64_t n, int64_t k,
                       cudaStream_t stream) {
  if (!x || !w || !w_scale || !out || !fp8_gemv_f16_supported(m, n, k, x, w)) return cudaErrorInvalidValue;
  const auto kernel = fp8_gemv_f16_kernel<XT, OT>;
  F16Plan p;
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(kernel), m, (n + kTileRows - 1) / kTileRows, k, 1, &p);
      err != cudaSuccess)
    return err;
  return launch_dependent(kernel, dim3(unsigned(p.grid)), dim3(kThreads), p.smem, stream, x, w, w_scale, out, int(m),
                          int(n), int(k), int(fp8_num_blocks(k)), p.sharing);
}

}  // namespace

bool fp8_gemv_f16_supported(int64_t m, int64_t n, int64_t k, const void* x, const void* w) {
  return m >= 1 && m <= kFp8GemvF16MaxTokens && n >= 1 && n <= INT32_MAX - kTileRows && k > 0 && k % 16 == 0 &&
         k <= INT32_MAX / 2 && staged_bytes(m, k) <= kSmemCap && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

cudaError_t launch_fp8_gemv_f16(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}

}  // namespace troupe::kernels
