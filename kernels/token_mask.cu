#include "kernels/token_mask.hpp"

#include <cuda_runtime.h>

#include <cmath>

namespace troupe::kernels {
namespace {

__global__ void apply_token_mask_kernel(float* logits, int64_t vocab, const int32_t* rows, const uint32_t* masks,
                                        int64_t num_words) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= vocab) return;
  const int64_t k = blockIdx.y;
  const uint32_t word = masks[k * num_words + (i >> 5)];
  if (!((word >> (i & 31)) & 1u)) logits[int64_t(rows[k]) * vocab + i] = -INFINITY;
}

}  // namespace

cudaError_t launch_apply_token_mask_f32(float* logits, int64_t vocab, const int32_t* rows, int64_t num_rows,
                                        const uint32_t* masks, int64_t num_words, cudaStream_t stream) {
  if (vocab < 0 || num_rows < 0 || num_words < (vocab + 31) / 32 || num_rows > 65535) return cudaErrorInvalidValue;
  if (vocab == 0 || num_rows == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const dim3 grid(unsigned((vocab + kThreads - 1) / kThreads), unsigned(num_rows));
  apply_token_mask_kernel<<<grid, kThreads, 0, stream>>>(logits, vocab, rows, masks, num_words);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
