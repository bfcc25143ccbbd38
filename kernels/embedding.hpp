#pragma once
// Token embedding: out[t, :] = table[ids[t], :], from an fp32 or a bf16 table (widened exactly).
// Three layers: the __global__ kernels (embedding.cu: a block per token, or per token and 2,048
// values of a bf16 row), these raw-pointer launchers, and the CPU reference with the same formula
// (embedding_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference. ids: [n]; table: [vocab, hidden] (fp32, or bf16 bits); out: [n, hidden] fp32.
void embedding_ref(const int32_t* ids, const float* table, float* out, int64_t n, int64_t hidden);
void embedding_ref(const int32_t* ids, const uint16_t* table, float* out, int64_t n, int64_t hidden);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as embedding_ref. n == 0 does nothing; n > INT32_MAX or hidden <= 0 give
// cudaErrorInvalidValue.
cudaError_t launch_embedding_f32(const int32_t* ids, const float* table, float* out, int64_t n, int64_t hidden,
                                 cudaStream_t stream);
// The same from a bf16 table (bf16 bits) into fp32 rows; hidden past 65,535 x 2,048 gives
// cudaErrorInvalidValue.
cudaError_t launch_embedding_bf16(const int32_t* ids, const uint16_t* table, float* out, int64_t n, int64_t hidden,
                                  cudaStream_t stream);
#endif

}  // namespace troupe::kernels
