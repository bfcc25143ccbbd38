#pragma once
// Kernel spans as the GPU ran them, CUDA graph nodes and programmatic dependent launches included,
// from CUPTI's activity records (CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL): where a decode step's time
// goes inside its graph, which per-op CUDA events (profiling_backend) cannot see and an isolated
// kernel time (ncu) overstates, since each kernel's ramp overlaps its neighbours'. bench/step_trace
// reads the spans.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/step_trace.hpp"

namespace troupe::bench {

// Starts recording every kernel of the process; false (with the reason said) when CUPTI refuses.
bool start_kernel_trace();
// Waits for the device, stops recording and returns the spans since start_kernel_trace, by start.
std::vector<KernelSpan> stop_kernel_trace();

// Runs `steps` (a few decode steps, or one prefill; false on failure) under the trace; the last
// step's kernels (those after the last gap of `gap_ns` or more between kernels: 20 us parts decode
// steps; a prefill, whose MoE layers wait for the host, takes a larger one) go to `csv_path`, and
// records `<stem>_span` (first start to last end), `<stem>_busy` (the time some kernel ran, against the span) and `<stem>_<kernel>` for the sixteen kernel names that moved the
// step's end the most (bench/step_trace.hpp's marginal, against the span; `sum_us`: durations
// summed, `alone_us`: the time it ran alone).
void record_traced_step(const std::function<bool()>& steps, const std::string& stem, const std::string& csv_path,
                        uint64_t gap_ns = 20000);

}  // namespace troupe::bench
