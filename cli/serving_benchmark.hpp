#pragma once
// `troupe bench`: drives a running server's /v1/completions with N concurrent streaming clients,
// like vLLM's serving benchmark, and reports request throughput, output tokens/s, TTFT, TPOT and
// inter-token latency (median, p90, p99).
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::cli {

struct ServingBenchmarkOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  std::string model;       // served name; "" => the first of GET /v1/models
  int64_t num_prompts = 64;
  int64_t max_concurrency = 64;
  int64_t input_len = 64;  // prompt token ids (random, within the vocabulary of any model)
  int64_t output_len = 64;
  int64_t vocab_limit = 256;  // prompt ids are drawn from [5, vocab_limit): byte tokens in any byte-level BPE
  int64_t seed = 0;
  int64_t timeout_s = 600;  // for the whole run
  std::string out;          // JSON file; "" => bench/results/serving_<date>.json
  std::string device_label;  // what served the requests (e.g. "NVIDIA H100"); "" => this host's CPU
};

struct LatencySummary {
  double median = 0, p90 = 0, p99 = 0, mean = 0;
};

struct ServingBenchmarkResult {
  int64_t num_completed = 0;
  int64_t num_failed = 0;
  int64_t num_output_tokens = 0;
  double duration_s = 0;
  double request_throughput = 0;  // requests/s
  double output_throughput = 0;   // tokens/s
  LatencySummary ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::vector<std::string> errors;  // first few
};

LatencySummary summarize(std::vector<double> values);
Result<ServingBenchmarkResult> run_serving_benchmark(const ServingBenchmarkOptions& options);

}  // namespace troupe::cli
