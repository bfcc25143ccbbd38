#pragma once
// One token through FP8 block-scaled weights (the decode step at batch 1; the formula and the
// reference are fp8_block_gemm.hpp's), streaming W the way the bf16 GEMV does (gemv.cu): a warp
// reads 512 contiguous bytes of one row per load instruction, where fp8_block_gemm.cu's tensor-core
// tile reads 64 bytes of each of 8 rows. With one token a tensor core has nothing to share, so the
// products run on CUDA cores and the weights are widened to fp32 with integer operations.
// launch_fp8_block_gemv takes this path for m == 1 when fp8_gemv_rows_supported says so and the f16
// kernel (fp8_gemv_f16.hpp) does not take the shape or leaves SMs empty.
#include <cstdint>

#include <cuda_runtime_api.h>

namespace troupe::kernels {

// Whether launch_fp8_gemv_rows takes the shape: n and k positive, k % 16 == 0, x and w 16-byte
// aligned.
bool fp8_gemv_rows_supported(int64_t n, int64_t k, const void* x, const void* w);

// out[n] = sum_kb (sum_{k in kb} x[k] w[n, k]) w_scale[n / 128, kb], x rounded to bf16 (fp32 x is
// rounded once, as the reference expects), fp32 sums. No workspace. cudaErrorInvalidValue when
// !fp8_gemv_rows_supported or a pointer is null. Launched as a programmatic dependent.
cudaError_t launch_fp8_gemv_rows(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t n,
                                 int64_t k, cudaStream_t stream);
cudaError_t launch_fp8_gemv_rows(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t n,
                                 int64_t k, cudaStream_t stream);
cudaError_t launch_fp8_gemv_rows(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t n,
                                 int64_t k, cudaStream_t stream);
cudaError_t launch_fp8_gemv_rows(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t n,
                                 int64_t k, cudaStream_t stream);

}  // namespace troupe::kernels
