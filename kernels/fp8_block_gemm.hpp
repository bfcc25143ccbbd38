#pragma once
// Block-scaled FP8 linear layers (DeepSeek-V3/R1 checkpoints), weights kept FP8 on the device:
//   out[m, n] = sum_kb ( sum_{k in kb} x[m, k] * w[n, k] ) * x_scale[kb, m] * w_scale[n / 128, kb]
// W: [N, K] e4m3 bits, w_scale: [ceil(N / 128), ceil(K / 128)] fp32 (the checkpoint's scale_inv);
// kb runs over 128-wide K blocks, the last one maybe partial. The sum inside a block is
// accumulated in fp32 on tensor cores, then scaled and added to an fp32 total in CUDA cores
// (DeepGEMM's promotion), so no block's partial sum sees another block's scale.
// Two kernels (fp8_block_gemm.cu), one CPU reference (fp8_block_gemm_ref.cpp):
//   - decode (m <= kFp8GemvMaxTokens): x stays bf16 (fp32 x is rounded to bf16 once), no x
//     scale; W is streamed once for all m tokens with 16-byte loads and widened to bf16 in
//     registers (exact), products on bf16 tensor cores (mma m16n8k16). K may be split over CTAs,
//     whose partial sums meet in a workspace (fp8_block_gemv_workspace_bytes). Up to 8 tokens go
//     to fp8_gemv_f16.hpp first (f16 tensor cores, x staged with per-block exponents), one token
//     next to fp8_gemv_rows.hpp (CUDA cores), where they take the shape;
//   - prefill: x quantized per token and 128 channels (fp8_quant.hpp), e4m3 x e4m3 tensor cores
//     (mma m16n8k32, sm_89+), 128x128 output tiles, a 3-stage cp.async pipeline.
// cuBLASLt's own block-scaled FP8 GEMM (CUDA 12.9+, sm_90 only) is wrapped in fp8_block_gemm_lt.cu.
#include <cstddef>
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// The most tokens the decode kernel takes.
constexpr int64_t kFp8GemvMaxTokens = 64;
// From this many tokens up to kFp8GemvMaxTokens, in multiples of 16, a linear layer whose shape
// cuBLASLt takes (fp8_block_gemm_cublaslt_shape) runs the prefill path (x quantized per token and
// 128 channels, cuBLASLt's block-scaled GEMM) instead of the decode kernel: the weights are read
// once either way, and at these sizes the decode kernel falls far behind (on the
// H200 at 64 tokens it streamed R1's o, dense gate_up and dense down at 0.15 of HBM bandwidth,
// cuBLASLt at 128 tokens at 0.47 to 0.57). Multiples of 16 only: at 17 tokens (n 1536, k 2048)
// cuBLASLt's result was 2.5e-2 of max |out| off the quantized reference, at 16 and 64 within 1e-2.
// Of the graphs' decode buckets (backends/graphed_model.cpp) 16, 32, 48 and 64 take it, 24 does not.
constexpr int64_t kFp8LtMinTokens = 16;

// CPU reference in fp64 (the same block formula). x: [m, k] real values (bf16-rounded for the
// decode kernel, the decoded e4m3 values for the prefill one); x_scale: [ceil(k/128), m] or
// nullptr (all ones); w: [n, k] e4m3 bits; w_scale: [ceil(n/128), ceil(k/128)]; out: [m, n].
void fp8_block_gemm_ref(const float* x, const float* x_scale, const uint8_t* w, const float* w_scale, double* out,
                        int64_t m, int64_t n, int64_t k);

#ifdef TROUPE_HAVE_CUDA
// Decode. x: [m, k] fp32 or bf16 bits; w, w_scale as above; out: [m, n] fp32 or bf16 bits (rounded
// to nearest even). workspace: fp8_block_gemv_workspace_bytes(m, n, k) bytes (may be 0 bytes and
// nullptr). 16-byte weight loads when k % 16 == 0 and w is 16-byte aligned, else byte loads.
// m == 0 does nothing; m > kFp8GemvMaxTokens, n or k <= 0, or a short workspace give
// cudaErrorInvalidValue.
size_t fp8_block_gemv_workspace_bytes(int64_t m, int64_t n, int64_t k);
// Whether launch_fp8_block_gemv runs these sizes on the f16 tensor-core kernel (fp8_gemv_f16.hpp),
// its first choice: then that file's fused launch (two products in one) runs the same arithmetic,
// and a caller may take it instead.
bool fp8_gemv_runs_f16(int64_t m, int64_t n, int64_t k, const void* x, const void* w);
cudaError_t launch_fp8_block_gemv(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                  int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream);
cudaError_t launch_fp8_block_gemv(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                  int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream);
cudaError_t launch_fp8_block_gemv(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                  int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream);
cudaError_t launch_fp8_block_gemv(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out,
                                  int64_t m, int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                                  cudaStream_t stream);

// Prefill (any m). x_fp8: [m, k] e4m3 bits and x_scale: [ceil(k/128), m] from launch_fp8_quant_*.
// cp.async 16-byte tiles when k % 16 == 0 and x_fp8, w are 16-byte aligned, else byte loads (slow:
// awkward sizes only). m == 0 does nothing; n or k <= 0 give cudaErrorInvalidValue.
cudaError_t launch_fp8_block_gemm(const uint8_t* x_fp8, const float* x_scale, const uint8_t* w, const float* w_scale,
                                  float* out, int64_t m, int64_t n, int64_t k, cudaStream_t stream);
cudaError_t launch_fp8_block_gemm(const uint8_t* x_fp8, const float* x_scale, const uint8_t* w, const float* w_scale,
                                  uint16_t* out, int64_t m, int64_t n, int64_t k, cudaStream_t stream);

// cuBLASLt (fp8_block_gemm_lt.cu): the same product with A = W in CUBLASLT_MATMUL_MATRIX_SCALE_
// BLK128x128_32F and B = x in VEC128_32F, D = out (seen column-major [n, m]). lt_handle: a
// cublasLtHandle_t. cudaErrorNotSupported for shapes outside the checked ones (n % 128, k % 512 not
// 0) and when cublasLtMatmulAlgoGetHeuristic offers no algorithm (a cuBLAS before 12.9, a GPU other
// than sm_90, or sizes it refuses); cudaErrorUnknown for other
// cuBLASLt failures.
cudaError_t fp8_block_gemm_cublaslt_probe(void* lt_handle, int64_t m, int64_t n, int64_t k, bool bf16_out);
// The shapes the wrapper passes to cuBLASLt (the others give cudaErrorNotSupported at once).
bool fp8_block_gemm_cublaslt_shape(int64_t n, int64_t k);
// Whether CudaBackend::linear quantizes x for an [m, k] x [n, k]^T FP8 block product (the prefill
// path) rather than reading it as it is (the decode kernel), given the first size that takes
// cuBLASLt.
inline bool fp8_linear_quantizes_x(int64_t m, int64_t n, int64_t k, int64_t lt_min_tokens = kFp8LtMinTokens) {
  return m > kFp8GemvMaxTokens || (m >= lt_min_tokens && m % 16 == 0 && fp8_block_gemm_cublaslt_shape(n, k));
}
cudaError_t launch_fp8_block_gemm_cublaslt(void* lt_handle, const uint8_t* x_fp8, const float* x_scale,
                                           const uint8_t* w, const float* w_scale, float* out, int64_t m, int64_t n,
                                           int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream);
cudaError_t launch_fp8_block_gemm_cublaslt(void* lt_handle, const uint8_t* x_fp8, const float* x_scale,
                                           const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                           int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                                           cudaStream_t stream);
#endif

}  // namespace troupe::kernels
