#pragma once
// Greedy argmax over each row of logits: out[r] = the first index of the row's maximum. Values not
// above -FLT_MAX (-inf) and NaN never win; a row with nothing else gives INT32_MAX. (Device sampling
// with NaN checks and filters is sampling.hpp's.) Three layers: the __global__ kernel (argmax.cu:
// one block per row, a shared-memory tree), this raw-pointer launcher, and the CPU reference
// (argmax_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference. logits: [rows, vocab]; out: [rows].
void argmax_ref(const float* logits, int32_t* out, int64_t rows, int64_t vocab);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as argmax_ref. rows == 0 does nothing; rows > INT32_MAX or vocab <= 0
// give cudaErrorInvalidValue.
cudaError_t launch_argmax_f32(const float* logits, int32_t* out, int64_t rows, int64_t vocab, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
