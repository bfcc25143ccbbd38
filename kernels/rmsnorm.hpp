#pragma once
// RMSNorm over the last dimension: out[t, i] = x[t, i] / sqrt(mean_i(x[t, :]^2) + eps) * weight[i],
// and the fused residual form: residual += x; out = rmsnorm(residual) * weight.
// Three layers: the __global__ kernels (rmsnorm.cu; add_rmsnorm.cu: one block per row, a wide
// float4 kernel for 1024 <= hidden <= 16384), these raw-pointer launchers, and the CPU references
// with the same formula (rmsnorm_ref.cpp) that tests compare against. Outputs are fp32 or bf16 bits
// (rounded to nearest even), the input of a bf16 product.
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU references, fp64 sum of squares. x, out: [num_tokens, hidden]; weight: [hidden]. The uint16_t
// overloads write bf16 bits (the fp32 result rounded to nearest even).
void rmsnorm_ref(const float* x, const float* weight, float* out, int64_t num_tokens, int64_t hidden,
                 float eps);
void rmsnorm_ref(const float* x, const float* weight, uint16_t* out, int64_t num_tokens, int64_t hidden,
                 float eps);
// residual[t, i] += x[t, i] (one fp32 add), then out = rmsnorm_ref(residual). residual, x, out:
// [num_tokens, hidden].
void add_rmsnorm_ref(float* residual, const float* x, const float* weight, float* out, int64_t num_tokens,
                     int64_t hidden, float eps);
void add_rmsnorm_ref(float* residual, const float* x, const float* weight, uint16_t* out, int64_t num_tokens,
                     int64_t hidden, float eps);

#ifdef TROUPE_HAVE_CUDA
// Device pointers; out may alias x.
cudaError_t launch_rmsnorm_f32(const float* x, const float* weight, float* out, int64_t num_tokens,
                               int64_t hidden, float eps, cudaStream_t stream);
// The same with out bf16 bits (rounded to nearest even), the input of a bf16 product.
cudaError_t launch_rmsnorm_f32_to_bf16(const float* x, const float* weight, uint16_t* out, int64_t num_tokens,
                                       int64_t hidden, float eps, cudaStream_t stream);
// residual += x; out = rmsnorm(residual) * weight. All [n, hidden]; weight [hidden]. The wide kernel
// runs when residual, x, weight and out are 16-byte aligned, hidden % 4 == 0 and
// 1024 <= hidden <= 16384; else one 256-thread block per row.
cudaError_t launch_add_rmsnorm_f32(float* residual, const float* x, const float* weight, float* out, int64_t n,
                                   int64_t hidden, float eps, cudaStream_t stream);
// The same with out bf16 bits (rounded to nearest even; must not overlap residual).
cudaError_t launch_add_rmsnorm_f32_to_bf16(float* residual, const float* x, const float* weight, uint16_t* out,
                                           int64_t n, int64_t hidden, float eps, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
