#pragma once
// Elementwise fp32 kernels of the CUDA backend: the gated MLP's activation (silu_and_mul, plain and
// over a packed gate/up row, fp32 or bf16 out), add, add_bias, and the fp32 -> bf16 conversion.
// Three layers: the __global__ kernels (elementwise.cu: one thread per output, float4 where rows
// allow), these raw-pointer launchers, and the CPU references with the same formula
// (elementwise_ref.cpp). silu(g) = g / (1 + exp(-g)); bf16 outputs are rounded to nearest even.
// The bf16-input activation (prefill-sized steps) is mlp_activation.hpp's.
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU references. gate, up, a, b, out, x: [count]; gate_up: [n, 2 * inter] (gate, then up, per
// row); packed out: [n, inter]; add_bias out: [rows, cols], bias: [cols].
void silu_and_mul_ref(const float* gate, const float* up, float* out, int64_t count);
void silu_and_mul_packed_ref(const float* gate_up, float* out, int64_t n, int64_t inter);
void silu_and_mul_packed_ref(const float* gate_up, uint16_t* out, int64_t n, int64_t inter);  // bf16 bits
void add_ref(const float* a, const float* b, float* out, int64_t count);
void add_bias_ref(float* out, const float* bias, int64_t rows, int64_t cols);
void f32_to_bf16_ref(const float* x, uint16_t* out, int64_t count);
void bf16_to_f32_ref(const uint16_t* x, float* out, int64_t count);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as the references. count == 0 (or n == 0) does nothing.
// out = silu(gate) * up; out = a + b. Elementwise over `count` floats.
cudaError_t launch_silu_and_mul_f32(const float* gate, const float* up, float* out, int64_t count, cudaStream_t stream);
cudaError_t launch_add_f32(const float* a, const float* b, float* out, int64_t count, cudaStream_t stream);
// out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i]. float4 loads when inter % 4 == 0 and the
// rows are aligned, else one output a thread. Negative sizes give cudaErrorInvalidValue.
cudaError_t launch_silu_and_mul_packed_f32(const float* gate_up, float* out, int64_t n, int64_t inter,
                                           cudaStream_t stream);
// The same with out bf16 bits (rounded to nearest even), the input of the down projection.
cudaError_t launch_silu_and_mul_packed_f32_to_bf16(const float* gate_up, uint16_t* out, int64_t n, int64_t inter,
                                                   cudaStream_t stream);
// out[r, c] += bias[c]. out: [rows, cols].
cudaError_t launch_add_bias_f32(float* out, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// out[i] = bf16(x[i]), round to nearest even.
cudaError_t launch_f32_to_bf16(const float* x, uint16_t* out, int64_t count, cudaStream_t stream);
// out[i] = x[i] widened (exact).
cudaError_t launch_bf16_to_f32(const uint16_t* x, float* out, int64_t count, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
