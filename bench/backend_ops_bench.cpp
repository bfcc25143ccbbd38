// The op table's perf mode: every row of tests/gpu/backend_ops_table.hpp (the kernels of kernels/
// on awkward and model-sized shapes) launched on device 0 and timed with CUDA events (median of
// --reps launches after a warm-up), its bytes read + written per second against the HBM bandwidth
// measured here (rows that fit in the 60 MB L2 can beat it). --check first compares each row with
// its CPU reference, as tests/gpu/backend_ops_test.cpp does. Prints a table; writes JSON records
// (bench/results/backend_ops_<date>.json, or --out).
//   backend_ops_bench [--filter SUBSTRING] [--reps N] [--check] [--out PATH]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/device_ceilings.hpp"
#include "runtime/bench_record.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe {
namespace {

struct Args {
  std::string filter;  // substring of "op [variant] sizes"
  int reps = 20;
  bool check = false;
  std::string out;
  std::string command;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 0; i < argc; ++i) a.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--filter") a.filter = value();
    else if (arg == "--reps") a.reps = std::max(1, std::atoi(value().c_str()));
    else if (arg == "--out") a.out = value();
    else if (arg == "--check") a.check = true;
    else if (arg == "--perf") continue;  // the only mode; accepted for symmetry with test-backend-ops
    else {
      std::fprintf(stderr, "usage: backend_ops_bench [--filter SUBSTRING] [--reps N] [--check] [--out PATH]\n");
      std::exit(2);
    }
  }
  return a;
}

int run(const Args& args) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "backend_ops_bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const double hbm_gbs = bench::measure_bandwidth();
  std::printf("%s, measured HBM bandwidth %.0f GB/s\n", prop.name, hbm_gbs);
  std::printf("%-20s %-12s %-58s %10s %9s %s\n", "op", "variant", "sizes", "us", "GB/s", "check");
  std::vector<BenchRecord> records;
  std::mt19937 rng(1234);
  int failures = 0;
  for (const backend_ops::OpCase& c : backend_ops::op_table()) {
    const std::string name = c.op + " [" + c.variant + "] " + c.sizes;
    if (!args.filter.empty() && name.find(args.filter) == std::string::npos) continue;
    backend_ops::OpRun r = c.make(rng);
    if (!r.error.empty() || r.launch(nullptr) != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
      std::printf("%-20s %-12s %-58s  failed: %s\n", c.op.c_str(), c.variant.c_str(), c.sizes.c_str(),
                  r.error.empty() ? cudaGetErrorString(cudaGetLastError()) : r.error.c_str());
      ++failures;
      continue;
    }
    std::string verdict = "-";
    if (args.check) {
      r.reference();
      verdict = "ok";
      for (const backend_ops::Output& out : r.outputs) {
        const std::string failure = backend_ops::check_output(out, nullptr);
        if (!failure.empty()) verdict = failure;
      }
      if (verdict != "ok") ++failures;
    }
    const double ms = bench::time_events_ms(args.reps, [&] { r.launch(nullptr); });
    const double gbs = ms > 0 ? r.bytes / (ms * 1e-3) / 1e9 : 0;
    std::printf("%-20s %-12s %-58s %10.2f %9.1f %s\n", c.op.c_str(), c.variant.c_str(), c.sizes.c_str(), ms * 1e3,
                gbs, verdict.c_str());
    BenchRecord record{c.key() + " " + c.sizes, gbs, "GB/s", hbm_gbs, hbm_gbs > 0 ? gbs / hbm_gbs : 0,
                       "bytes one launch reads and writes / median launch time (CUDA events); limit = measured "
                       "device-to-device copy bandwidth (rows that fit in L2 may exceed it)",
                       {{"us", ms * 1e3}, {"bytes", r.bytes}}};
    records.push_back(std::move(record));
  }
  auto written = write_bench_records(records, "backend_ops", args.out, args.command, prop.name);
  if (written.ok()) std::printf("wrote %s\n", written.value().c_str());
  else std::fprintf(stderr, "could not write the records: %s\n", written.error().message.c_str());
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) { return troupe::run(troupe::parse(argc, argv)); }
