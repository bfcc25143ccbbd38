#pragma once
// Programmatic dependent launch (Hopper): a kernel launched with launch_dependent() may start while
// the kernel before it in the stream still runs, once every block of that kernel has called
// allow_dependents() (or exited). It must call wait_for_prerequisites() before it reads anything
// the earlier kernels wrote or writes anything they read; until then it may only read data no
// kernel of the stream writes (weights). The decode step's GEMVs use this to start streaming
// weights while the norm or attention kernel before them finishes; the step's other kernels (norms,
// rope, attention, activation) call both first thing, so each is resident when its predecessor ends.
#include <cuda_runtime.h>

#include <cstdlib>
#include <utility>

namespace troupe::kernels {

__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_prerequisites() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, smem_bytes, stream>>>(args...) as a programmatic dependent of the
// work before it in `stream`.
template <typename... Params, typename... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
                             Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  // TROUPE_SMEM_CARVEOUT=<percent>: every dependent kernel asks for that shared-memory carveout
  // (a diagnostic: kernels that need different carveouts cannot share an SM, which defeats the
  // early residency above).
  static const int carveout = [] {
    const char* env = std::getenv("TROUPE_SMEM_CARVEOUT");
    return env ? std::atoi(env) : -1;
  }();
  if (carveout >= 0) cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, carveout);
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace troupe::kernels
