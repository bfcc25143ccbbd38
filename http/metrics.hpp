#pragma once
// Prometheus text exposition of the server's and the engine's counters, names prefixed `troupe:`
// (--metrics-prefix) as vLLM prefixes `vllm:`. Latency histograms are observed by the HTTP side.
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "engine/serving_engine.hpp"

namespace troupe::http {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // Lines `name_bucket{labels,le="..."} n`, `name_sum{labels} s`, `name_count{labels} n`.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  mutable std::mutex mutex_;
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;  // [upper_bounds.size() + 1], the last one is +Inf
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string prefix = "troupe:");
  void observe_time_to_first_token(double seconds) { time_to_first_token_.observe(seconds); }
  void observe_inter_token_latency(double seconds) { inter_token_latency_.observe(seconds); }
  void observe_e2e_latency(double seconds) { e2e_request_latency_.observe(seconds); }
  // One choice ended: request_success_total{finished_reason="stop|length|abort|error"}.
  void count_finished(FinishReason reason);

  std::string render(const EngineStats& stats, const std::string& model_name) const;

 private:
  std::string prefix_;
  Histogram time_to_first_token_;
  Histogram inter_token_latency_;
  Histogram e2e_request_latency_;
  mutable std::mutex mutex_;
  std::array<uint64_t, 5> num_requests_finished_{};  // by FinishReason
};

}  // namespace troupe::http
