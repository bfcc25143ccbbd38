// `troupe bench`: the serving benchmark against a running `troupe serve` / `troupe head`.
#include <cstdio>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/serving_benchmark.hpp"
#include "runtime/bench_record.hpp"

namespace troupe::cli {

int run_bench(const Config& config, const ServingBenchmarkOptions& given) {
  ServingBenchmarkOptions options = given;
  for (auto [flag, value] : {std::pair{"--num-prompts", given.num_prompts}, {"--max-concurrency", given.max_concurrency},
                             {"--input-len", given.input_len}, {"--output-len", given.output_len},
                             {"--timeout", given.timeout_s}, {"--vocab-limit", given.vocab_limit - 5}})
    if (value < 1) return report_error(make_error(ErrorCode::invalid_argument, std::string(flag) + ": must be >= 1"));
  options.host = config.host;
  options.port = int(config.http_port);
  options.api_key = config.api_key;
  auto result = run_serving_benchmark(options);
  if (!result.ok()) return report_error(result.error());
  const ServingBenchmarkResult& r = result.value();

  std::printf("%-28s %10lld ok, %lld failed in %.2f s\n", "requests", (long long)r.num_completed,
              (long long)r.num_failed, r.duration_s);
  std::printf("%-28s %10.2f req/s\n", "request throughput", r.request_throughput);
  std::printf("%-28s %10.1f tok/s\n", "output throughput", r.output_throughput);
  std::printf("%-28s %10s %10s %10s\n", "latency (ms)", "median", "p90", "p99");
  for (auto [name, s] : {std::pair{"TTFT", r.ttft_ms}, {"TPOT", r.tpot_ms}, {"ITL", r.itl_ms}, {"E2E", r.e2e_ms}})
    std::printf("%-28s %10.2f %10.2f %10.2f\n", name, s.median, s.p90, s.p99);
  for (const auto& e : r.errors) std::printf("error: %s\n", e.c_str());

  std::vector<BenchRecord> records{
      {"serving_request_throughput", r.request_throughput, "req/s", {}, {}, ""},
      {"serving_output_throughput", r.output_throughput, "tok/s", {}, {}, ""},
      {"serving_failed_requests", double(r.num_failed), "count", {}, {}, ""},
  };
  for (auto [name, s] : {std::pair{"ttft", r.ttft_ms}, {"tpot", r.tpot_ms}, {"itl", r.itl_ms}, {"e2e", r.e2e_ms}}) {
    records.push_back({std::string("serving_") + name + "_median", s.median, "ms", {}, {}, ""});
    records.push_back({std::string("serving_") + name + "_p90", s.p90, "ms", {}, {}, ""});
    records.push_back({std::string("serving_") + name + "_p99", s.p99, "ms", {}, {}, ""});
  }
  const std::string command = "troupe bench --num-prompts " + std::to_string(options.num_prompts) +
                              " --max-concurrency " + std::to_string(options.max_concurrency) + " --input-len " +
                              std::to_string(options.input_len) + " --output-len " + std::to_string(options.output_len);
  auto written = write_bench_records(records, "serving", options.out, command, options.device_label);
  if (!written.ok()) return report_error(written.error());
  std::printf("wrote %s\n", written->c_str());
  return r.num_failed == 0 ? 0 : 1;
}

}  // namespace troupe::cli
