#pragma once
// Small-batch products with bf16 weights, the decode step's matrix work:
//   out[t, o] = sum_i x[t, i] * W[o, i] (+ bias[o]),  t < n <= 8,
// x fp32 or bf16 (launch_gemv_bf16_x16), out fp32, W bf16 in the checkpoint layout
// [out_features, in_features], fp32 accumulation.
// At n <= 8 the product is bound by reading W once, so the kernel (gemv.cu) streams each weight
// row exactly once for all n tokens with 16-byte loads; cuBLAS handles larger n. Three layers:
// the __global__ kernel, this raw-pointer launcher, and the CPU reference (gemv_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// The most tokens one launch takes.
constexpr int64_t kGemvMaxTokens = 8;

// CPU reference in fp64 from the same bf16 weight bits. x: [n, in]; weight: [out, in] bf16 bits;
// bias: [out] or nullptr; out: [n, out]. abs_sum (nullable, [n, out]) gets sum_i |x * w| + |bias|,
// the scale that bounds the rounding error of any summation order.
void gemv_bf16_ref(const float* x, const uint16_t* weight, const float* bias, double* out, double* abs_sum,
                   int64_t n, int64_t out_features, int64_t in_features);

#ifdef TROUPE_HAVE_CUDA
// Device pointers. x: [n, in_features] fp32 row-major; weight: [out_features, in_features] bf16
// bits; bias: [out_features] fp32 or nullptr; out: [n, out_features] fp32, must not overlap the
// inputs. 16-byte loads when in_features % 8 == 0 and weight and x are 16-byte aligned, else a
// scalar path. n == 0 does nothing; n > kGemvMaxTokens or non-positive sizes give
// cudaErrorInvalidValue.
cudaError_t launch_gemv_bf16(const float* x, const uint16_t* weight, const float* bias, float* out, int64_t n,
                             int64_t out_features, int64_t in_features, cudaStream_t stream);
// The same with bf16 activations (x: [n, in_features] bf16 bits, e.g. a bf16 rmsnorm output): one
// 16-byte load per 8 activations instead of two; the same weight stream, speed and fp32 sums.
cudaError_t launch_gemv_bf16_x16(const uint16_t* x, const uint16_t* weight, const float* bias, float* out, int64_t n,
                                 int64_t out_features, int64_t in_features, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
