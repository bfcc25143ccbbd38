#pragma once
// A read-ahead of a weight into L2 (Hopper's bulk prefetch), for the windows of a decode step in
// which HBM idles: at batch 1 the rope, attention and reduce kernels between Llama-3-8B FP8's qkv
// and o GEMVs stream almost nothing for about 16 us a layer (stop 41's H200 trace,
// bench/results/trace_llama3_8b_fp8_b1_*), and the o GEMV after them then takes 7.8 us for 16.8 MB.
// Launched on a second stream beside that work (CudaBackend::prefetch_weight), so the chain of
// kernels it overlaps gains no launch; the GEMV that reads the weight later finds it in L2.
// Nothing is written; the kernel issues the prefetches and exits (their data arrives after).
#include <cuda_runtime.h>

#include <cstddef>

namespace troupe::kernels {

// The bytes [p, p + bytes) as 16 KB bulk prefetches spread over `blocks` CTAs of one warp each
// (the tail past the last 16-byte multiple is left out). sm_90 and later; elsewhere a no-op kernel.
// Launched plainly (every dependency full) at the process-wide carveout (smem_carveout.hpp), so
// the SMs it lands on keep the carveout of the decode kernels around it.
cudaError_t launch_l2_prefetch(const void* p, size_t bytes, int blocks, cudaStream_t stream);

}  // namespace troupe::kernels
