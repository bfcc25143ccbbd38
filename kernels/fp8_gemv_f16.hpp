#pragma once
// A few tokens (1 to kFp8GemvF16MaxTokens) through FP8 block-scaled weights on f16 tensor cores:
// the decode step's linear layers at small batch. The formula and the reference are
// fp8_block_gemm.hpp's. Each CTA stages x once, as f16 with one power-of-two exponent per token
// and 128-wide K block (so x keeps bf16's range: the block's largest |x| lands in [2^14, 2^15)),
// then its warps stream 16-row tiles of W with 16-byte loads three K blocks ahead, widen e4m3 to f16
// with one cvt per two bytes (exact) and run mma m16n8k16 with W as A and the tokens as B. The
// block sums are promoted by w_scale times the block's x exponent, as in the other kernels.
//
// Why f16 rather than fp32 products (fp8_gemv_rows.cu): widening e4m3 to fp32 and one FMA per
// weight cost about four instructions per byte, which left R1's and Llama's one-token products
// issue-bound at 0.3 to 0.7 of HBM bandwidth; here a byte costs about a quarter of an instruction.
#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace troupe::kernels {

constexpr int64_t kFp8GemvF16MaxTokens = 8;

// Whether launch_fp8_gemv_f16 takes the shape: 1 <= m <= kFp8GemvF16MaxTokens, n >= 1, k % 16 == 0,
// the staged x (m ceil(k / 128) blocks) within the kernel's shared memory, x and w 16-byte aligned.
bool fp8_gemv_f16_supported(int64_t m, int64_t n, int64_t k, const void* x, const void* w);

// out[m, n] = sum_kb (sum_{k in kb} x[m, k] w[n, k]) w_scale[n / 128, kb], x rounded to bf16 (fp32 x
// is rounded once, as the reference expects; values below 2^-28 of their block's largest lose
// bits as f16 subnormals), fp32 sums. No workspace. cudaErrorInvalidValue when
// !fp8_gemv_f16_supported or a pointer is null. Launched as a programmatic dependent.
cudaError_t launch_fp8_gemv_f16(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream);
cudaError_t launch_fp8_gemv_f16(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream);
cudaError_t launch_fp8_gemv_f16(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream);
cudaError_t launch_fp8_gemv_f16(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream);

// Whether launch_fp8_gemv_f16_rmsnorm takes the shape: fp8_gemv_f16_supported's (whose staged-x
// bound keeps m times the K blocks under the 2,048 item sums the norm keeps).
bool fp8_gemv_f16_rmsnorm_supported(int64_t m, int64_t n, int64_t k, const void* x, const void* w);

// out = rmsnorm(x) W^T: x [m, k] fp32 RMS-normed on the way in (rmsnorm's formula: x * rsqrt(mean
// of x^2 over k + eps) * norm_weight [k]), one launch instead of rmsnorm's and this one's. Neither
// x nor the normed x is rounded to bf16 as rmsnorm's bf16 output and the plain launch's fp32 x are
// (fp8_gemv_f16_tiles.cuh's gemv_tiles says how it stages); deterministic. cudaErrorInvalidValue
// when !fp8_gemv_f16_rmsnorm_supported or a pointer is null. Launched as a programmatic dependent.
cudaError_t launch_fp8_gemv_f16_rmsnorm(const float* x, const float* norm_weight, float eps, const uint8_t* w,
                                        const float* w_scale, float* out, int64_t m, int64_t n, int64_t k,
                                        cudaStream_t stream);

// Two products of one x in one launch: w [n_a + n_b, k] holds W_a's rows then W_b's, w_scale their
// scale rows in the same order (n_a a multiple of 128, so W_b's scale rows start a block);
// out_a[m, n_a] = x W_a^T, out_b[m, n_b] = x W_b^T, fp32, each as launch_fp8_gemv_f16 computes
// it. (DeepSeek's q_a and kv_a: 1,536 + 576 rows fill the grid that neither fills alone.)
// cudaErrorInvalidValue when n_a % 128 != 0, n_a or n_b < 1, !fp8_gemv_f16_supported(m, n_a + n_b,
// k, x, w) or a pointer is null. Launched as a programmatic dependent.
cudaError_t launch_fp8_gemv_f16_split(const float* x, const uint8_t* w, const float* w_scale, float* out_a,
                                      int64_t n_a, float* out_b, int64_t n_b, int64_t m, int64_t k,
                                      cudaStream_t stream);
cudaError_t launch_fp8_gemv_f16_split(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out_a,
                                      int64_t n_a, float* out_b, int64_t n_b, int64_t m, int64_t k,
                                      cudaStream_t stream);

}  // namespace troupe::kernels
