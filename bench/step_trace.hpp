#pragma once
// A decode step's kernels as they ran (bench/kernel_trace records them): the last step of a trace,
// its span, the time some kernel ran, and per kernel name the durations and the time it ran alone.
// Plain arithmetic on the spans, so tests/unit checks it without a GPU.
#include <cstdint>
#include <string>
#include <vector>

namespace troupe::bench {

struct KernelSpan {
  std::string name;  // as CUPTI reports it (mangled)
  uint64_t start_ns = 0, end_ns = 0;
};

// The spans of the last step in `spans` (sorted by start): steps are split where the GPU ran
// nothing for more than `gap_ns` (the host's work between two graph replays).
std::vector<KernelSpan> last_step(const std::vector<KernelSpan>& spans, uint64_t gap_ns);

struct StepTrace {
  double span_us = 0;  // first start to last end
  double busy_us = 0;  // the union of the kernels' intervals
  struct Share {
    std::string name;
    int64_t count = 0;
    double sum_us = 0;      // their durations added (neighbours overlap, so these can exceed busy_us)
    double exposed_us = 0;  // time when a kernel of this name was the only one running
    // How far each of them moved the step's end: the kernels in start order, each one's end past
    // the latest end before it (0 if none). The names' marginals add up to the span. Under
    // programmatic dependent launch a kernel starts early and waits, so its duration overstates it
    // and its lone time is about 0; the marginal is the time the step would lose without it.
    double marginal_us = 0;
  };
  std::vector<Share> by_name;  // the largest marginal first
};
StepTrace summarize(const std::vector<KernelSpan>& step);

// A kernel's short name: the last identifier before its template or parameter list (a mangled
// name demangled first), other characters as '_' ("void ns::(anonymous namespace)::gemv<1>(int)"
// -> "gemv").
std::string short_kernel_name(const std::string& name);

// `path` with `suffix` before the file's extension ("t.csv", "_x" -> "t_x.csv"; none: appended).
std::string suffixed_path(const std::string& path, const std::string& suffix);
// Where the benchmarks write batch `batch`'s trace when asked for `path`: batch 1 at path itself,
// others with "_b<batch>" before the file's extension ("t.csv" -> "t_b64.csv").
std::string traced_csv_path(const std::string& path, int64_t batch);

// Writes the spans as CSV (name, start_us from the first, duration_us); false on failure.
bool write_spans_csv(const std::vector<KernelSpan>& spans, const std::string& path);

}  // namespace troupe::bench
