#pragma once
// A read-only streaming pass over a buffer: every 16-byte word is loaded once and folded into one
// 32-bit value per block, so the compiler cannot drop the loads. It is the bandwidth ceiling code
// that only reads can reach (a D2D copy also writes, and weight-streaming GEMVs beat it); the
// benchmarks take their HBM limit as the better of the two (bench/README.md). Three layers as every
// family: the __global__ kernel (stream_read.cu), this launcher, and the CPU reference
// (stream_read_ref.cpp), which computes the same fold.
#include <cstddef>
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// The fold the kernel computes over `words` 16-byte words (XOR of every 32-bit lane), for checks.
uint32_t stream_read_ref(const uint32_t* data, size_t words);

#ifdef TROUPE_HAVE_CUDA
// Reads `words` 16-byte words at `data` (16-byte aligned) once; writes a partial fold per block
// into `partials` (`blocks` entries; blocks <= 65535), whose XOR equals stream_read_ref. words == 0
// does nothing.
cudaError_t launch_stream_read(const void* data, size_t words, uint32_t* partials, int blocks, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
