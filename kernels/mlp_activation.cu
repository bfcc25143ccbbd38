#include "kernels/mlp_activation.hpp"

#include <cuda_bf16.h>

namespace troupe::kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float silu_times(float gate, float up) { return gate / (1.0f + expf(-gate)) * up; }

// One thread per 8 outputs: one 16-byte load of gate, one of up, one 16-byte store.
__global__ void silu_mul_bf16_vec_kernel(const uint4* gate_up, uint4* out, int64_t vectors_per_row, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t t = i / vectors_per_row, v = i - t * vectors_per_row;
  const uint4 g = gate_up[t * 2 * vectors_per_row + v], u = gate_up[t * 2 * vectors_per_row + vectors_per_row + v];
  const __nv_bfloat162* g2 = reinterpret_cast<const __nv_bfloat162*>(&g);
  const __nv_bfloat162* u2 = reinterpret_cast<const __nv_bfloat162*>(&u);
  uint4 r;
  __nv_bfloat162* r2 = reinterpret_cast<__nv_bfloat162*>(&r);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 gf = __bfloat1622float2(g2[k]), uf = __bfloat1622float2(u2[k]);
    r2[k] = __floats2bfloat162_rn(silu_times(gf.x, uf.x), silu_times(gf.y, uf.y));
  }
  out[i] = r;
}

__global__ void silu_mul_bf16_kernel(const __nv_bfloat16* gate_up, __nv_bfloat16* out, int64_t inter, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t t = i / inter, c = i - t * inter;
  const float gate = __bfloat162float(gate_up[t * 2 * inter + c]), up = __bfloat162float(gate_up[t * 2 * inter + inter + c]);
  out[i] = __float2bfloat16_rn(silu_times(gate, up));
}

unsigned blocks_for(int64_t count) { return unsigned((count + kThreads - 1) / kThreads); }

}  // namespace

cudaError_t launch_silu_and_mul_packed_bf16(const uint16_t* gate_up, uint16_t* out, int64_t n, int64_t inter,
                                            cudaStream_t stream) {
  if (n < 0 || inter < 0) return cudaErrorInvalidValue;
  if (n == 0 || inter == 0) return cudaSuccess;
  if ((n * inter + kThreads - 1) / kThreads > int64_t(0x7fffffff)) return cudaErrorInvalidValue;
  const bool vec = inter % 8 == 0 && reinterpret_cast<uintptr_t>(gate_up) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vec) {
    const int64_t total = n * inter / 8;
    silu_mul_bf16_vec_kernel<<<blocks_for(total), kThreads, 0, stream>>>(reinterpret_cast<const uint4*>(gate_up),
                                                                        reinterpret_cast<uint4*>(out), inter / 8, total);
  } else {
    silu_mul_bf16_kernel<<<blocks_for(n * inter), kThreads, 0, stream>>>(
        reinterpret_cast<const __nv_bfloat16*>(gate_up), reinterpret_cast<__nv_bfloat16*>(out), inter, n * inter);
  }
  return cudaGetLastError();
}

}  // namespace troupe::kernels
