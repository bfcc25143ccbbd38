// cuBLASLt's block-scaled FP8 GEMM (fp8_block_gemm.hpp): D[n, m] = W[n, k] . x[m, k]^T in
// cuBLASLt's column-major terms, A = W (transposed, "TN", the one FP8 layout Hopper runs) with
// one fp32 scale per 128x128 block, B = x with one fp32 scale per 128 channels of a token.
// The scale tensors are passed as they are: w_scale [ceil(n/128), ceil(k/128)] row-major (the
// checkpoint's) and x_scale [ceil(k/128), m] (fp8_quant's). The op table row checks that
// cuBLASLt reads them that way.
#include <cublasLt.h>

#include "kernels/fp8_block_gemm.hpp"

namespace troupe::kernels {
namespace {

struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  ~LtDescs() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

bool ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }

// Builds the descriptors and asks for one algorithm. cudaErrorNotSupported when none is offered.
cudaError_t plan(cublasLtHandle_t handle, int64_t m, int64_t n, int64_t k, bool bf16_out, const float* x_scale,
                 const float* w_scale, size_t workspace_bytes, LtDescs& desc, cublasLtMatmulAlgo_t* algo) {
  const cudaDataType_t out_type = bf16_out ? CUDA_R_16BF : CUDA_R_32F;
  if (!ok(cublasLtMatmulDescCreate(&desc.op, CUBLAS_COMPUTE_32F, CUDA_R_32F))) return cudaErrorUnknown;
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  const int32_t a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  if (!ok(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a))) ||
      !ok(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b))) ||
      !ok(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a_mode, sizeof(a_mode))) ||
      !ok(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b_mode, sizeof(b_mode))) ||
      !ok(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scale, sizeof(w_scale))) ||
      !ok(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof(x_scale))))
    return cudaErrorNotSupported;  // an older cuBLASLt without these attributes
  if (!ok(cublasLtMatrixLayoutCreate(&desc.a, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(n), k)) ||
      !ok(cublasLtMatrixLayoutCreate(&desc.b, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(m), k)) ||
      !ok(cublasLtMatrixLayoutCreate(&desc.d, out_type, uint64_t(n), uint64_t(m), n)))
    return cudaErrorUnknown;
  cublasLtMatmulPreference_t pref = nullptr;
  if (!ok(cublasLtMatmulPreferenceCreate(&pref))) return cudaErrorUnknown;
  const uint64_t max_workspace = workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace,
                                       sizeof(max_workspace));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(handle, desc.op, desc.a, desc.b, desc.d, desc.d, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (!ok(s) || found == 0) return cudaErrorNotSupported;
  *algo = result.algo;
  return cudaSuccess;
}

// The shapes cuBLASLt's block-scaled GEMM is used for: whole 128-blocks in n, and a k whose scale
// rows span whole 16-byte groups (ceil(k / 128) % 4 == 0): every R1 product but kv_a (n = 576),
// which now runs the own kernel. Other shapes went wrong: troupe-demo-fp8 (k = 128, 256, 768;
// n = 80, 384) answered 1 problem of 200 on an H200 while cuBLASLt took them, 0.995 since. Which
// of n or k cuBLASLt mishandles is not yet isolated (tests/gpu/cuda_fp8_linear_test.cpp).
bool is_lt_shape(int64_t n, int64_t k) { return n % 128 == 0 && k % 128 == 0 && (k / 128) % 4 == 0; }

template <typename OT>
cudaError_t run(void* lt_handle, const uint8_t* x, const float* x_scale, const uint8_t* w, const float* w_scale,
                OT* out, int64_t m, int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  if (!lt_handle || m < 0 || n <= 0 || k <= 0 || !x || !x_scale || !w || !w_scale || !out)
    return cudaErrorInvalidValue;
  if (!is_lt_shape(n, k)) return cudaErrorNotSupported;
  const auto handle = static_cast<cublasLtHandle_t>(lt_handle);
  LtDescs desc;
  cublasLtMatmulAlgo_t algo;
  if (cudaError_t err = plan(handle, m, n, k, sizeof(OT) == 2, x_scale, w_scale, workspace ? workspace_bytes : 0,
                             desc, &algo);
      err != cudaSuccess)
    return err;
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t s = cublasLtMatmul(handle, desc.op, &alpha, w, desc.a, x, desc.b, &beta, out, desc.d, out,
                                          desc.d, &algo, workspace, workspace ? workspace_bytes : 0, stream);
  return ok(s) ? cudaSuccess : cudaErrorUnknown;
}

}  // namespace

cudaError_t fp8_block_gemm_cublaslt_probe(void* lt_handle, int64_t m, int64_t n, int64_t k, bool bf16_out) {
  if (!lt_handle || m <= 0 || n <= 0 || k <= 0) return cudaErrorInvalidValue;
  if (!is_lt_shape(n, k)) return cudaErrorNotSupported;
  // The heuristic wants scale pointers set; it does not read them.
  void* scales = nullptr;
  if (cudaError_t err = cudaMalloc(&scales, 256); err != cudaSuccess) return err;
  LtDescs desc;
  cublasLtMatmulAlgo_t algo;
  const cudaError_t err = plan(static_cast<cublasLtHandle_t>(lt_handle), m, n, k, bf16_out,
                               static_cast<const float*>(scales), static_cast<const float*>(scales) + 32,
                               size_t(32) << 20, desc, &algo);
  cudaFree(scales);
  return err;
}

cudaError_t launch_fp8_block_gemm_cublaslt(void* lt_handle, const uint8_t* x_fp8, const float* x_scale,
                                           const uint8_t* w, const float* w_scale, float* out, int64_t m, int64_t n,
                                           int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return run(lt_handle, x_fp8, x_scale, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}

cudaError_t launch_fp8_block_gemm_cublaslt(void* lt_handle, const uint8_t* x_fp8, const float* x_scale,
                                           const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                           int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                                           cudaStream_t stream) {
  return run(lt_handle, x_fp8, x_scale, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}

}  // namespace troupe::kernels
