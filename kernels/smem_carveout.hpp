#pragma once
// The shared-memory carveout (percent of the unified L1 / shared memory; -1: the driver's choice)
// that every kernel launched by launch_dependent (dependent_launch.cuh) asks for. Kernels that need
// different carveouts cannot share an SM: the SM drains before it is reconfigured, which defeats
// programmatic dependent launch's early residency. A decode step whose FP8 linear layers run
// fp8_gemv_f16 (shared memory for x) among kernels that need none paid that at each boundary:
// Llama-3-8B FP8 b1 on the H200 took 3.97 ms per step with the driver's choice and 3.25 ms with 50
// for every kernel (3.38 at 25, 3.29 at 75, 3.99 at 100), while the bf16 model lost 4% at 50
// (4.97 ms against 4.75); R1's reduced shape (3 dense + 4 MoE layers) at batch 1 took 2.44 ms with
// the driver's choice and 2.21 ms with 50. So the backend sets it per model (Backend::prefer_fp8_decode);
// TROUPE_SMEM_CARVEOUT=<percent> overrides it for A/B runs. Process-wide.
//
// The preference is honoured wherever one CTA fits it, so it also caps the CTAs an SM holds: 50%
// of the H200's 228 KB rounds to 132 KB, one CTA of the MLA prefill kernels (about 105 KB each,
// sized for two an SM). Those kernels ask for the whole of shared memory instead (SmemNeed::full):
// in the FP8 model's prefill trace (stop 41) the wgmma kernel took 2.36-2.44 ms a layer against
// 1.55 ms alone in dsv3_mla_bench, which never set the preference. Prefill kernels run long and
// alone, so their own carveout costs one drain at each boundary.
#include <atomic>

namespace troupe::kernels {

// What decode steps on FP8 weights ask for (measured above).
constexpr int kFp8DecodeSmemCarveout = 50;
constexpr int kFullSmemCarveout = 100;  // cudaSharedmemCarveoutMaxShared

std::atomic<int>& dependent_smem_carveout_setting();
inline void set_dependent_smem_carveout(int percent) { dependent_smem_carveout_setting().store(percent); }

// What a dependent kernel needs of the carveout: the process-wide preference above (decode-step
// kernels), or all of shared memory (kernels whose occupancy needs it: the MLA prefill kernels).
enum class SmemNeed { shared_preference, full };
// The percent a launch of such a kernel asks for: TROUPE_SMEM_CARVEOUT when set (every kernel
// alike, read once: A/B runs, e.g. 50 to see the MLA prefill as it ran before), else the
// preference or kFullSmemCarveout.
int smem_carveout_for(SmemNeed need);

}  // namespace troupe::kernels
