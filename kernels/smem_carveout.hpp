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
#include <atomic>

namespace troupe::kernels {

// What decode steps on FP8 weights ask for (measured above).
constexpr int kFp8DecodeSmemCarveout = 50;

std::atomic<int>& dependent_smem_carveout_setting();
inline void set_dependent_smem_carveout(int percent) { dependent_smem_carveout_setting().store(percent); }

}  // namespace troupe::kernels
