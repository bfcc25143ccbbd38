#pragma once
// Per-token, per-128-channel FP8 activation quantization, the input side of the block-scaled
// FP8 GEMM (fp8_block_gemm.hpp), as DeepGEMM's per_token_cast_to_fp8 does it:
//   for each token m and K block kb (channels [128 kb, 128 kb + 128), the last one maybe partial):
//     amax = max(max_k |x[m, k]|, kFp8MinAmax),  scale = amax / 448,
//     x_fp8[m, k] = e4m3_satfinite_rn(x[m, k] * (448 / amax)),  x_scale[kb, m] = scale,
// so x[m, k] ~= x_fp8[m, k] * x_scale[kb, m]. Both divisions are single IEEE roundings on either
// side, so the kernel and the reference (fp8_quant_ref.cpp) agree bit for bit.
// NOTE: x_scale is stored K-block-major, [ceil(K / 128), M] (x_scale[kb * M + m]): a K step of the
// GEMM reads the scales of consecutive tokens together (DeepGEMM's layout; the fp8_block_gemm_lt op
// table rows check that cuBLASLt's VEC128 mode reads it so).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

constexpr int64_t kFp8BlockSize = 128;
// The floor of a group's amax: an all-zero group gets a finite scale (and all-zero fp8 values).
constexpr float kFp8MinAmax = 1e-12f;

inline int64_t fp8_num_blocks(int64_t n) { return (n + kFp8BlockSize - 1) / kFp8BlockSize; }

// CPU reference. x: [m, k] fp32 (bf16 inputs widened exactly); x_fp8: [m, k] e4m3 bits;
// x_scale: [ceil(k / 128), m].
void fp8_quant_ref(const float* x, uint8_t* x_fp8, float* x_scale, int64_t m, int64_t k);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, layouts as above; no alignment needed. m == 0 does nothing; negative m or
// k <= 0 give cudaErrorInvalidValue.
cudaError_t launch_fp8_quant_f32(const float* x, uint8_t* x_fp8, float* x_scale, int64_t m, int64_t k,
                                 cudaStream_t stream);
// x: [m, k] bf16 bits.
cudaError_t launch_fp8_quant_bf16(const uint16_t* x, uint8_t* x_fp8, float* x_scale, int64_t m, int64_t k,
                                  cudaStream_t stream);
#endif

}  // namespace troupe::kernels
