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

// One finished request (choice) as vLLM's per-request histograms see it; seconds, -1: unknown.
struct FinishedRequestTimes {
  double e2e_s = 0;
  double queue_s = -1;        // in the engine before its first step
  double first_token_s = -1;  // from arrival to the first token (-1: none came)
  int64_t num_prompt_tokens = 0;
  int64_t num_generation_tokens = 0;
};

// What cache_config_info's labels say.
struct CacheConfigLabels {
  int64_t block_size = 0;
  double gpu_memory_utilization = 0;
  std::string device;
};

class Metrics {
 public:
  explicit Metrics(std::string prefix = "troupe:", CacheConfigLabels cache = {});
  void observe_time_to_first_token(double seconds) { time_to_first_token_.observe(seconds); }
  void observe_inter_token_latency(double seconds) { inter_token_latency_.observe(seconds); }
  void observe_e2e_latency(double seconds) { e2e_request_latency_.observe(seconds); }
  // One choice ended: request_success_total{finished_reason="stop|length|abort|error"}.
  void count_finished(FinishReason reason);
  // One choice ended: queue, prefill, decode, inference, time per output token, token counts.
  void observe_finished(const FinishedRequestTimes& times);

  std::string render(const EngineStats& stats, const std::string& model_name) const;

 private:
  std::string prefix_;
  Histogram time_to_first_token_;
  Histogram inter_token_latency_;
  Histogram e2e_request_latency_;
  CacheConfigLabels cache_;
  Histogram time_per_output_token_;
  Histogram queue_time_;
  Histogram prefill_time_;
  Histogram decode_time_;
  Histogram inference_time_;
  Histogram prompt_tokens_;
  Histogram generation_tokens_;
  mutable std::mutex mutex_;
  std::array<uint64_t, 5> num_requests_finished_{};  // by FinishReason
};

}  // namespace troupe::http
