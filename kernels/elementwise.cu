// Elementwise kernels (elementwise.hpp): one thread per output, or per 4 outputs (float4) for the
// packed activation on aligned rows, or per 8 for the bf16 widening of aligned buffers.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/bf16_stream.cuh"
#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/elementwise.hpp"

namespace troupe::kernels {
namespace {

__global__ void f32_to_bf16_kernel(const float* x, __nv_bfloat16* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = __float2bfloat16_rn(x[i]);
}

__global__ void bf16_to_f32_kernel(const __nv_bfloat16* x, float* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = __bfloat162float(x[i]);
}

// Eight values a thread (one 16-byte load, two 16-byte stores; both buffers 16-byte aligned), the
// last count % 8 by the thread after the whole groups. A prefill widens GEMM outputs of hundreds
// of MB this way (R1's q_b at 4,096 tokens: 0.6 GB moved; the one-value kernel ran at ~2 TB/s).
__global__ void bf16_to_f32_vec_kernel(const uint16_t* x, float* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, groups = count / 8;
  if (i < groups) {
    float v[8];
    bf16_stream::widen8(__ldg(reinterpret_cast<const uint4*>(x) + i), v);
    float4* dst = reinterpret_cast<float4*>(out) + 2 * i;
    dst[0] = make_float4(v[0], v[1], v[2], v[3]);
    dst[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else if (i == groups) {
    for (int64_t j = 8 * groups; j < count; ++j) out[j] = bf16_stream::bf16_lo(x[j]);
  }
}

__global__ void add_bias_kernel(float* out, const float* bias, int64_t rows, int64_t cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * cols) out[i] += bias[i % cols];
}

__global__ void silu_and_mul_kernel(const float* gate, const float* up, float* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__device__ __forceinline__ float silu_mul(float gate, float up) { return gate / (1.0f + expf(-gate)) * up; }

// gate_up: [n, 2 * inter] (gate, then up, per row); out: [n, inter]. One thread per output.
template <typename OutT>
__global__ void silu_and_mul_packed_kernel(const float* gate_up, OutT* out, int64_t inter, int64_t count) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) {
    const int64_t t = i / inter, c = i - t * inter;
    store(out + i, silu_mul(gate_up[t * 2 * inter + c], gate_up[t * 2 * inter + inter + c]));
  }
}

// The same for inter % 4 == 0 and aligned rows: block row blockIdx.x (a token), 4 outputs a thread
// from two float4 loads, no 64-bit division.
template <typename OutT>
__global__ void silu_and_mul_packed_vec_kernel(const float* gate_up, OutT* out, int64_t inter) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const int64_t vectors = inter / 4, v = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (v >= vectors) return;
  const float4* row = reinterpret_cast<const float4*>(gate_up + int64_t(blockIdx.x) * 2 * inter);
  const float4 g = row[v], u = row[vectors + v];
  store4(out + int64_t(blockIdx.x) * inter, v,
         make_float4(silu_mul(g.x, u.x), silu_mul(g.y, u.y), silu_mul(g.z, u.z), silu_mul(g.w, u.w)));
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = a[i] + b[i];
}

template <typename OutT>
cudaError_t launch_silu_and_mul_packed(const float* gate_up, OutT* out, int64_t n, int64_t inter,
                                       cudaStream_t stream) {
  if (n == 0 || inter == 0) return cudaSuccess;
  if (n < 0 || inter < 0) return cudaErrorInvalidValue;
  const int64_t column_blocks = (inter / 4 + kThreads - 1) / kThreads;
  const bool aligned = reinterpret_cast<uintptr_t>(gate_up) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % (4 * sizeof(OutT)) == 0;
  if (aligned && inter % 4 == 0 && !bad_rows(n) && column_blocks <= 65535) {
    const dim3 grid{unsigned(n), unsigned(column_blocks)};
    return launch_dependent(silu_and_mul_packed_vec_kernel<OutT>, grid, dim3(kThreads), 0, stream, gate_up, out, inter);
  }
  return launch_dependent(silu_and_mul_packed_kernel<OutT>, dim3(blocks_for(n * inter)), dim3(kThreads), 0, stream,
                          gate_up, out, inter, n * inter);
}

}  // namespace

cudaError_t launch_f32_to_bf16(const float* x, uint16_t* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  f32_to_bf16_kernel<<<blocks_for(count), kThreads, 0, stream>>>(x, reinterpret_cast<__nv_bfloat16*>(out), count);
  return cudaGetLastError();
}

cudaError_t launch_bf16_to_f32(const uint16_t* x, float* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    bf16_to_f32_vec_kernel<<<blocks_for(count / 8 + 1), kThreads, 0, stream>>>(x, out, count);
    return cudaGetLastError();
  }
  bf16_to_f32_kernel<<<blocks_for(count), kThreads, 0, stream>>>(reinterpret_cast<const __nv_bfloat16*>(x), out, count);
  return cudaGetLastError();
}

cudaError_t launch_add_bias_f32(float* out, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  add_bias_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(out, bias, rows, cols);
  return cudaGetLastError();
}

cudaError_t launch_silu_and_mul_f32(const float* gate, const float* up, float* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  silu_and_mul_kernel<<<blocks_for(count), kThreads, 0, stream>>>(gate, up, out, count);
  return cudaGetLastError();
}

cudaError_t launch_silu_and_mul_packed_f32(const float* gate_up, float* out, int64_t n, int64_t inter,
                                           cudaStream_t stream) {
  return launch_silu_and_mul_packed(gate_up, out, n, inter, stream);
}

cudaError_t launch_silu_and_mul_packed_f32_to_bf16(const float* gate_up, uint16_t* out, int64_t n, int64_t inter,
                                                   cudaStream_t stream) {
  return launch_silu_and_mul_packed(gate_up, reinterpret_cast<__nv_bfloat16*>(out), n, inter, stream);
}

cudaError_t launch_add_f32(const float* a, const float* b, float* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  add_kernel<<<blocks_for(count), kThreads, 0, stream>>>(a, b, out, count);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
