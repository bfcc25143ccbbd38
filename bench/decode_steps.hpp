#pragma once
// The GPU benchmark's model steps: timed decode or prefill steps over a model on its own KV
// cache, the decode step's linear layers timed alone, and one step profiled op by op.
#include <cstdint>
#include <string>
#include <vector>

#include "bench/profiling_backend.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "runtime/model.hpp"

namespace troupe::bench {

struct StepTimes {
  std::vector<double> ms;
  std::vector<double> host_ms;  // until forward returned (host work and launches), per timed step
  bool ok = true;
  bool finite = true;
};

// Creates a cache for `num_seqs` sequences of up to `max_context` tokens, then runs `warm` + `steps`
// steps of `num_new` tokens per sequence, the context growing from `context`. Stops early past
// `budget_s` or near the time limit. With `profiler` (the backend the model runs on), the last step
// is recorded, with a greedy argmax of its logits as an engine step does; its ops land in `*profile`.
StepTimes run_steps(Model& model, Backend& backend, int64_t num_seqs, int64_t num_new, int64_t context,
                    int64_t warm, int64_t steps, double budget_s, ProfilingBackend* profiler = nullptr,
                    std::vector<OpProfile>* profile = nullptr);

// The decode step's linear layers alone at batch 1, fused as the model runs them (one weight of
// each shape, zeroed, timed with CUDA events through backend.linear): milliseconds per step they
// account for, or 0 on failure.
double linear_ms_per_step(cuda::CudaBackend& backend, const ModelConfig& c, double bw_gbs);

// (c2) Runs `warm` unprofiled steps of `num_seqs` sequences of `num_new` tokens at `context`, then records
// one step (forward + argmax) through `profiler` and writes one record per op (`prefix` + op name):
// its CUDA-event time summed over the step against the profiled step's wall time, plus the time no
// op accounts for and the host gaps.
void profile_step(Model& model, ProfilingBackend& profiler, int64_t num_new, int64_t context, int64_t warm,
                  const std::string& prefix, const std::string& what, double unprofiled_ms, int64_t num_seqs = 1);

}  // namespace troupe::bench
