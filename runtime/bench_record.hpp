#pragma once
// Benchmark results as JSON records {metric, value, unit, limit, fraction_of_limit, device, date,
// commit, command}, written under bench/results/. One writer for every benchmark program.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

struct BenchRecord {
  std::string metric;
  double value = 0;
  std::string unit;
  std::optional<double> limit;              // the physical limit compared against, same unit
  std::optional<double> fraction_of_limit;  // as the metric defines it (e.g. roofline / measured)
  std::string note;                         // what the limit is, how it was measured
  std::vector<std::pair<std::string, double>> extra = {};  // further numeric keys, e.g. {"threads", 1}
};

// "Intel(R) Xeon(R) ... (2 cores)" or the GPU name when the caller passes one.
std::string host_device_name();
// `git rev-parse --short HEAD` of the source tree, or "unknown".
std::string source_commit();
// Today as YYYY-MM-DD (UTC).
std::string today();
// Writes {"records": [...]} with device/date/commit/command filled in; path "" => 
// bench/results/<stem>_<date>.json under the source tree. Returns the path written.
Result<std::string> write_bench_records(const std::vector<BenchRecord>& records, const std::string& stem,
                                        const std::string& path, const std::string& command,
                                        const std::string& device = "");

}  // namespace troupe
