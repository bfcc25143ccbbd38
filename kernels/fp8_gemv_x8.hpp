#pragma once
// Decode-shaped FP8 block-scaled products (1 to 64 tokens) with the activations quantized as the
// prefill path quantizes them (fp8_quant.hpp: per token and 128 channels, amax / 448), so both
// operands of the tensor-core product are e4m3 and the weights are fed to mma m16n8k32 exactly as
// loaded, with no widening in registers:
//   out[m, n] = sum_kb ( sum_{k in kb} x_fp8[m, k] * w[n, k] ) * x_scale[kb, m] * w_scale[n / 128, kb]
// the formula of fp8_block_gemm.hpp's prefill GEMM. Each CTA quantizes the x of its K range into
// shared memory itself (no separate quantization launch), while its first weight blocks are in
// flight. Against fp8_block_gemm.hpp's decode kernel (x kept bf16, weights widened to bf16 before
// each mma), a 16-byte weight load costs one mma instead of eight conversions and two mmas.
#include <cstddef>
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// The most tokens the kernel takes (eight token tiles of eight).
constexpr int64_t kFp8GemvX8MaxTokens = 64;

// The shapes the kernel takes: 16-byte weight rows (k % 16 == 0) and 16-byte aligned x and w.
bool fp8_gemv_x8_supported(int64_t m, int64_t n, int64_t k, const void* x, const void* w);

#ifdef TROUPE_HAVE_CUDA
// Bytes of workspace launch_fp8_gemv_x8 needs for (m, n, k) on the current device (0 when K is
// not split over CTAs).
size_t fp8_gemv_x8_workspace_bytes(int64_t m, int64_t n, int64_t k);

// x: [m, k] fp32 or bf16 bits; w: [n, k] e4m3 bits; w_scale: [ceil(n / 128), ceil(k / 128)];
// out: [m, n] fp32 or bf16 bits (rounded to nearest even). m == 0 does nothing; an unsupported
// shape, m > kFp8GemvX8MaxTokens or a short workspace give cudaErrorInvalidValue. A programmatic
// dependent launch (dependent_launch.cuh): the first weight blocks load before x is waited for.
cudaError_t launch_fp8_gemv_x8(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                               int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream);
cudaError_t launch_fp8_gemv_x8(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                               int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream);
cudaError_t launch_fp8_gemv_x8(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                               int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream);
cudaError_t launch_fp8_gemv_x8(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out,
                               int64_t m, int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                               cudaStream_t stream);
#endif

}  // namespace troupe::kernels
