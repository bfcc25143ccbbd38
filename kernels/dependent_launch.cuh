#pragma once
// Programmatic dependent launch (Hopper): a kernel launched with launch_dependent() may start while
// the kernel before it in the stream still runs, once every block of that kernel has called
// allow_dependents() (or exited). It must call wait_for_prerequisites() before it reads anything
// the earlier kernels wrote or writes anything they read; until then it may only read data no
// kernel of the stream writes (weights). The decode step's GEMVs use this to start streaming
// weights while the norm or attention kernel before them finishes; the step's other kernels (norms,
// rope, attention, activation) call both first thing, so each is resident when its predecessor ends.
// Every such launch also asks for the process-wide shared-memory carveout (kernels/smem_carveout.hpp),
// or all of shared memory where the kernel's occupancy needs it (launch_dependent_needing).
// TROUPE_NO_PDL=1 makes them plain launches (a diagnostic for ordering faults; read once), and so
// does a PlainLaunches in scope on the launching thread (plain_launches.hpp).
#include <cuda_runtime.h>

#include <cstdlib>
#include <unordered_map>
#include <utility>

#include "kernels/plain_launches.hpp"
#include "kernels/smem_carveout.hpp"

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

// Sets `kernel`'s preferred carveout to what `need` asks for (smem_carveout_for) when it differs
// from what this host thread last set for it on this device (the attribute belongs to the device;
// one driver call per kernel and change).
inline void apply_dependent_smem_carveout(const void* kernel, SmemNeed need = SmemNeed::shared_preference) {
  const int percent = smem_carveout_for(need);
  thread_local bool any_set = false;
  if (percent == -1 && !any_set) return;  // the driver's choice, and nothing to undo
  any_set = true;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return;
  thread_local std::unordered_map<const void*, std::pair<int, int>> applied;  // kernel -> {device, percent}
  auto it = applied.find(kernel);
  if (it != applied.end() && it->second == std::make_pair(device, percent)) return;
  if (it == applied.end() && percent == -1) return;  // never set: already the driver's choice
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, percent) == cudaSuccess)
    applied[kernel] = {device, percent};
}

// Launches kernel<<<grid, block, smem_bytes, stream>>>(args...) as a programmatic dependent of the
// work before it in `stream`, at the carveout `need` asks for.
template <typename... Params, typename... Args>
cudaError_t launch_dependent_needing(SmemNeed need, void (*kernel)(Params...), dim3 grid, dim3 block,
                                     size_t smem_bytes, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  // TROUPE_NO_PDL=1: plain launches (a diagnostic: the kernels' waits then return at once).
  static const bool no_pdl = [] {
    const char* env = std::getenv("TROUPE_NO_PDL");
    return env && env[0] == '1';
  }();
  config.numAttrs = no_pdl || plain_launches_here() ? 0 : 1;  // plain_launches.hpp
  apply_dependent_smem_carveout(reinterpret_cast<const void*>(kernel), need);
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// The same at the process-wide preference (the decode step's kernels).
template <typename... Params, typename... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
                             Args&&... args) {
  return launch_dependent_needing(SmemNeed::shared_preference, kernel, grid, block, smem_bytes, stream,
                                  std::forward<Args>(args)...);
}

}  // namespace troupe::kernels
