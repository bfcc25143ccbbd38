#pragma once
// RMSNorm over the last dimension: out[t, i] = x[t, i] / sqrt(mean_i(x[t, :]^2) + eps) * weight[i].
// Three layers: the __global__ kernel (rmsnorm.cu), this raw-pointer launcher, and the CPU
// reference with the same formula (rmsnorm_ref.cpp) that tests compare against.
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference, fp32 accumulation. x, out: [num_tokens, hidden]; weight: [hidden].
void rmsnorm_ref(const float* x, const float* weight, float* out, int64_t num_tokens, int64_t hidden,
                 float eps);

#ifdef TROUPE_HAVE_CUDA
// Device pointers; out may alias x.
cudaError_t launch_rmsnorm_f32(const float* x, const float* weight, float* out, int64_t num_tokens,
                               int64_t hidden, float eps, cudaStream_t stream);
// The same with out bf16 bits (rounded to nearest even), the input of a bf16 product.
cudaError_t launch_rmsnorm_f32_to_bf16(const float* x, const float* weight, uint16_t* out, int64_t num_tokens,
                                       int64_t hidden, float eps, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
