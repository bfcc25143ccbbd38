#include <cuda_bf16.h>

#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/fp8_gemv_f16_tiles.cuh"

// The dense launches of fp8_gemv_f16_tiles.cuh's tile loop: tiles of 16 rows (RowTiles, or
// SplitRows for two products in one launch).
namespace troupe::kernels {
namespace {

using namespace f16_tiles;

// kRingRegisters: fp8_gemv_f16_tiles.cuh's comment on gemv_tiles says why.
template <typename XT, typename OT, int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing>)
    fp8_gemv_f16_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                        OT* __restrict__ out, int m, int n, int k, int num_kb, int sharing) {
  gemv_tiles<kRing>(x, k, w, w_scale, m, k, num_kb, sharing, RowTiles<OT, false>{{n}, out, 1.0f});
}

// x RMS-normed on the way in (gemv_tiles' kNorm): fp32 x, fp32 out.
template <int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing>)
    fp8_gemv_f16_norm_kernel(const float* __restrict__ x, const uint8_t* __restrict__ w,
                             const float* __restrict__ w_scale, float* __restrict__ out, int m, int n, int k,
                             int num_kb, int sharing, const float* __restrict__ norm_weight, float eps) {
  gemv_tiles<kRing, true>(x, k, w, w_scale, m, k, num_kb, sharing, RowTiles<float, false>{{n}, out, 1.0f},
                          norm_weight, eps);
}

// Two products of one x whose weights lie back to back in one [n, k] buffer and one scale table
// (rows [0, n_a) then [n_a, n), n_a a multiple of 128): tiles as RowTiles over all n rows, row r's
// sums to out_a[t, r] below n_a, else out_b[t, r - n_a].
template <typename OT>
struct SplitRows : SixteenRowTiles {
  OT* out_a;
  OT* out_b;
  int n_a;
  __device__ void store(int tile, int g, int t, int m, const float (&total)[4]) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = tile * kTileRows + g + (j >= 2 ? 8 : 0), tok = 2 * t + (j % 2);
      if (row >= n || tok >= m) continue;
      if (row < n_a)
        store_out(out_a + int64_t(tok) * n_a + row, total[j]);
      else
        store_out(out_b + int64_t(tok) * (n - n_a) + (row - n_a), total[j]);
    }
  }
};

template <typename XT, typename OT, int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing>)
    fp8_gemv_f16_split_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w,
                              const float* __restrict__ w_scale, OT* __restrict__ out_a, OT* __restrict__ out_b, int m,
                              int n_a, int n, int k, int num_kb, int sharing) {
  gemv_tiles<kRing>(x, k, w, w_scale, m, k, num_kb, sharing, SplitRows<OT>{{n}, out_a, out_b, n_a});
}

template <typename Kernel, typename XT, typename OT>
cudaError_t launch_planned(Kernel kernel, int64_t tiles, const XT* x, const uint8_t* w, const float* w_scale, OT* out,
                           int64_t m, int64_t rows, int64_t k, cudaStream_t stream) {
  F16Plan p;
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(kernel), m, tiles, k, 1, &p); err != cudaSuccess)
    return err;
  return launch_dependent(kernel, dim3(unsigned(p.grid)), dim3(kThreads), p.smem, stream, x, w, w_scale, out, int(m),
                          int(rows), int(k), int(fp8_num_blocks(k)), p.sharing);
}

template <typename XT, typename OT>
cudaError_t launch_f16(const XT* x, const uint8_t* w, const float* w_scale, OT* out, int64_t m, int64_t n, int64_t k,
                       cudaStream_t stream) {
  if (!x || !w || !w_scale || !out || !fp8_gemv_f16_supported(m, n, k, x, w)) return cudaErrorInvalidValue;
  const auto kernel = ring_buffers() == 4 ? fp8_gemv_f16_kernel<XT, OT, 4> : fp8_gemv_f16_kernel<XT, OT, 3>;
  return launch_planned(kernel, (n + kTileRows - 1) / kTileRows, x, w, w_scale, out, m, n, k, stream);
}

template <typename XT, typename OT>
cudaError_t launch_f16_split(const XT* x, const uint8_t* w, const float* w_scale, OT* out_a, int64_t n_a, OT* out_b,
                             int64_t n_b, int64_t m, int64_t k, cudaStream_t stream) {
  if (!x || !w || !w_scale || !out_a || !out_b || n_a < 1 || n_b < 1 || n_a % kFp8BlockSize != 0 ||
      !fp8_gemv_f16_supported(m, n_a + n_b, k, x, w))
    return cudaErrorInvalidValue;
  const auto kernel =
      ring_buffers() == 4 ? fp8_gemv_f16_split_kernel<XT, OT, 4> : fp8_gemv_f16_split_kernel<XT, OT, 3>;
  F16Plan p;
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(kernel), m, (n_a + n_b + kTileRows - 1) / kTileRows, k,
                                 1, &p);
      err != cudaSuccess)
    return err;
  return launch_dependent(kernel, dim3(unsigned(p.grid)), dim3(kThreads), p.smem, stream, x, w, w_scale, out_a, out_b,
                          int(m), int(n_a), int(n_a + n_b), int(k), int(fp8_num_blocks(k)), p.sharing);
}

cudaError_t launch_norm(const float* x, const float* norm_weight, float eps, const uint8_t* w, const float* w_scale,
                        float* out, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (!x || !norm_weight || !w || !w_scale || !out || !fp8_gemv_f16_rmsnorm_supported(m, n, k, x, w))
    return cudaErrorInvalidValue;
  const auto kernel = ring_buffers() == 4 ? fp8_gemv_f16_norm_kernel<4> : fp8_gemv_f16_norm_kernel<3>;
  F16Plan p;
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(kernel), m, (n + kTileRows - 1) / kTileRows, k, 1, &p);
      err != cudaSuccess)
    return err;
  return launch_dependent(kernel, dim3(unsigned(p.grid)), dim3(kThreads), p.smem, stream, x, w, w_scale, out, int(m),
                          int(n), int(k), int(fp8_num_blocks(k)), p.sharing, norm_weight, eps);
}

}  // namespace

cudaError_t launch_fp8_gemv_f16_rmsnorm(const float* x, const float* norm_weight, float eps, const uint8_t* w,
                                        const float* w_scale, float* out, int64_t m, int64_t n, int64_t k,
                                        cudaStream_t stream) {
  return launch_norm(x, norm_weight, eps, w, w_scale, out, m, n, k, stream);
}

bool fp8_gemv_f16_rmsnorm_supported(int64_t m, int64_t n, int64_t k, const void* x, const void* w) {
  return fp8_gemv_f16_supported(m, n, k, x, w) && m <= kNormMaxTokens && m * fp8_num_blocks(k) <= kNormMaxItems;
}

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

cudaError_t launch_fp8_gemv_f16_split(const float* x, const uint8_t* w, const float* w_scale, float* out_a,
                                      int64_t n_a, float* out_b, int64_t n_b, int64_t m, int64_t k,
                                      cudaStream_t stream) {
  return launch_f16_split(x, w, w_scale, out_a, n_a, out_b, n_b, m, k, stream);
}
cudaError_t launch_fp8_gemv_f16_split(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out_a,
                                      int64_t n_a, float* out_b, int64_t n_b, int64_t m, int64_t k,
                                      cudaStream_t stream) {
  return launch_f16_split(x, w, w_scale, out_a, n_a, out_b, n_b, m, k, stream);
}

}  // namespace troupe::kernels
