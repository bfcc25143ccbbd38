// The rotary embedding kernel (rope.hpp).
#include <algorithm>
#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/rope.hpp"

namespace troupe::kernels {
namespace {

// One block per (token, head of q then k); threads over the rotated pairs (i, i + half).
__global__ void rope_kernel(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_q_heads,
                            int64_t num_k_heads, int64_t head_dim, int64_t half) {
  const int64_t t = blockIdx.x, head = blockIdx.y;
  const float pos = float(positions[t]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    float* base = head < num_q_heads ? q + (t * num_q_heads + head) * head_dim
                                     : k + (t * num_k_heads + (head - num_q_heads)) * head_dim;
    const float angle = pos * inv_freq[i];
    const float c = float(cos(double(angle))), s = float(sin(double(angle)));
    const float x1 = base[i], x2 = base[i + half];
    base[i] = x1 * c - x2 * s;
    base[i + half] = x2 * c + x1 * s;
  }
}

}  // namespace

cudaError_t launch_rope_f32(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t n,
                            int64_t num_q_heads, int64_t num_k_heads, int64_t head_dim, int64_t half,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (bad_rows(n) || 2 * half > head_dim) return cudaErrorInvalidValue;
  if (num_q_heads + num_k_heads > 65535) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(n), unsigned(num_q_heads + num_k_heads));
  const unsigned threads = unsigned(std::min<int64_t>(std::max<int64_t>(32, (half + 31) / 32 * 32), kThreads));
  rope_kernel<<<grid, threads, 0, stream>>>(q, k, positions, inv_freq, num_q_heads, num_k_heads, head_dim, half);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
