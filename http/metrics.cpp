#include "http/metrics.hpp"

#include <algorithm>
#include <charconv>

namespace troupe::http {
namespace {

// The shortest text that reads back as v: le="0.1", not le="0.10000000000000001".
std::string number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::string("NaN");
}

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void sample(std::string& out, const std::string& name, const std::string& labels, double value) {
  out += name + "{" + labels + "} " + number(value) + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t i = 0;
  while (i < upper_bounds_.size() && value > upper_bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = i < upper_bounds_.size() ? number(upper_bounds_[i]) : "+Inf";
    sample(out, name + "_bucket", labels + ",le=\"" + le + "\"", double(cumulative));
  }
  sample(out, name + "_sum", labels, sum_);
  sample(out, name + "_count", labels, double(count_));
}

namespace {

// vLLM's request-time buckets (seconds) and token-count buckets (1, 2, 5, 10, 20, 50, ...).
std::vector<double> request_time_buckets() {
  return {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
          120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}

std::vector<double> token_count_buckets() {
  std::vector<double> bounds;
  for (double base = 1; base <= 1e6; base *= 10)
    for (double m : {1.0, 2.0, 5.0}) bounds.push_back(base * m);
  return bounds;
}

}  // namespace

Metrics::Metrics(std::string prefix, CacheConfigLabels cache)
    : prefix_(std::move(prefix)),
      time_to_first_token_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                            2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      inter_token_latency_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                            5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      e2e_request_latency_(request_time_buckets()),
      cache_(std::move(cache)),
      time_per_output_token_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                              7.5, 10.0, 20.0, 40.0, 80.0}),
      queue_time_(request_time_buckets()),
      prefill_time_(request_time_buckets()),
      decode_time_(request_time_buckets()),
      inference_time_(request_time_buckets()),
      prompt_tokens_(token_count_buckets()),
      generation_tokens_(token_count_buckets()) {}

void Metrics::observe_finished(const FinishedRequestTimes& t) {
  // NOTE: vLLM's split: queue (arrival to first scheduled step), prefill (to the first token),
  // decode (first to last token), inference = prefill + decode. Arrival is the HTTP submit here.
  const double queue = std::max(0.0, t.queue_s);
  queue_time_.observe(queue);
  if (t.first_token_s >= 0) {
    const double prefill = std::max(0.0, t.first_token_s - queue);
    const double decode = std::max(0.0, t.e2e_s - t.first_token_s);
    prefill_time_.observe(prefill);
    decode_time_.observe(decode);
    inference_time_.observe(prefill + decode);
    if (t.num_generation_tokens > 1) time_per_output_token_.observe(decode / double(t.num_generation_tokens - 1));
  }
  prompt_tokens_.observe(double(t.num_prompt_tokens));
  generation_tokens_.observe(double(t.num_generation_tokens));
}

void Metrics::count_finished(FinishReason reason) {
  if (reason == FinishReason::none) return;
  std::lock_guard<std::mutex> lock(mutex_);
  ++num_requests_finished_[size_t(reason)];
}

std::string Metrics::render(const EngineStats& stats, const std::string& model_name) const {
  // NOTE: model names come from the config; quote and backslash are escaped for the label.
  std::string escaped;
  for (char c : model_name) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped += c;
  }
  const std::string labels = "model_name=\"" + escaped + "\"";
  std::string out;
  auto gauge = [&](const std::string& name, const char* help, double v) {
    header(out, name, "gauge", help);
    sample(out, name, labels, v);
  };
  auto counter = [&](const std::string& name, const char* help, double v) {
    header(out, name, "counter", help);
    sample(out, name, labels, v);
  };
  gauge(prefix_ + "num_requests_running", "Requests in the running batch.", double(stats.num_running));
  gauge(prefix_ + "num_requests_waiting", "Requests waiting to be scheduled.", double(stats.num_waiting));
  double usage = stats.num_kv_blocks_total > 0
                     ? double(stats.num_kv_blocks_used) / double(stats.num_kv_blocks_total)
                     : 0.0;
  gauge(prefix_ + "kv_cache_usage_perc", "KV-cache usage, 1 means 100 percent.", usage);
  gauge(prefix_ + "kv_cache_blocks_used", "KV-cache blocks in use (0 when idle: a leak shows here).",
        double(stats.num_kv_blocks_used));
  gauge(prefix_ + "gpu_cache_usage_perc", "KV-cache usage, 1 means 100 percent (vLLM's older name).", usage);
  header(out, prefix_ + "cache_config_info", "gauge", "The KV cache's configuration, in labels.");
  sample(out, prefix_ + "cache_config_info",
         labels + ",block_size=\"" + std::to_string(cache_.block_size) + "\",num_gpu_blocks=\"" +
             std::to_string(stats.num_kv_blocks_total) + "\",gpu_memory_utilization=\"" +
             number(cache_.gpu_memory_utilization) + "\",device=\"" + cache_.device + "\"",
         1.0);
  counter(prefix_ + "prompt_tokens_total", "Prefill tokens processed.", double(stats.num_prompt_tokens_total));
  counter(prefix_ + "generation_tokens_total", "Generated tokens.", double(stats.num_generation_tokens_total));
  counter(prefix_ + "num_preemptions_total", "Preempted requests.", double(stats.num_preemptions_total));
  counter(prefix_ + "prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
          double(stats.num_prefix_cache_queries_total));
  counter(prefix_ + "prefix_cache_hits_total", "Prompt tokens found in the prefix cache.",
          double(stats.num_prefix_cache_hits_total));
  gauge(prefix_ + "engine_failed", "1 when the engine failed for good (a device fault); /health says why.",
        stats.failure.empty() ? 0.0 : 1.0);
  if (stats.cluster.enabled) {
    const ClusterStats& c = stats.cluster;
    gauge(prefix_ + "cluster_nodes", "Worker nodes joined and alive.", double(c.num_nodes));
    gauge(prefix_ + "cluster_groups_ready", "Serving groups ready for requests.", double(c.num_groups_ready));
    counter(prefix_ + "cluster_requests_resumed_total", "Requests moved to another group after a loss.",
            double(c.num_requests_resumed_total));
    header(out, prefix_ + "cluster_group_epoch", "gauge", "Each group's epoch (+1 on every restart).");
    for (const auto& g : c.groups)
      sample(out, prefix_ + "cluster_group_epoch", labels + ",group=\"" + std::to_string(g.group_id) + "\"",
             double(g.epoch));
    header(out, prefix_ + "cluster_group_restarts_total", "counter", "Each group's restarts.");
    for (const auto& g : c.groups)
      sample(out, prefix_ + "cluster_group_restarts_total", labels + ",group=\"" + std::to_string(g.group_id) + "\"",
             double(g.num_restarts));
    header(out, prefix_ + "cluster_group_ready", "gauge", "1 when the group is ready.");
    for (const auto& g : c.groups)
      sample(out, prefix_ + "cluster_group_ready", labels + ",group=\"" + std::to_string(g.group_id) + "\"",
             g.state == "ready" ? 1.0 : 0.0);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // NOTE: vLLM's names and label values; one series per choice that ended.
    const std::string name = prefix_ + "request_success_total";
    header(out, name, "counter", "Finished requests, by finish reason.");
    for (FinishReason reason : {FinishReason::stop, FinishReason::length, FinishReason::abort, FinishReason::error})
      sample(out, name, labels + ",finished_reason=\"" + to_string(reason) + "\"",
             double(num_requests_finished_[size_t(reason)]));
  }
  header(out, prefix_ + "time_to_first_token_seconds", "histogram", "Time to first token in seconds.");
  time_to_first_token_.render(out, prefix_ + "time_to_first_token_seconds", labels);
  header(out, prefix_ + "inter_token_latency_seconds", "histogram", "Time between output chunks in seconds.");
  inter_token_latency_.render(out, prefix_ + "inter_token_latency_seconds", labels);
  header(out, prefix_ + "e2e_request_latency_seconds", "histogram", "Request latency in seconds.");
  e2e_request_latency_.render(out, prefix_ + "e2e_request_latency_seconds", labels);
  auto histogram = [&](const Histogram& h, const std::string& name, const char* help) {
    header(out, prefix_ + name, "histogram", help);
    h.render(out, prefix_ + name, labels);
  };
  histogram(time_per_output_token_, "time_per_output_token_seconds", "Time per output token after the first, in seconds.");
  histogram(queue_time_, "request_queue_time_seconds", "Time a request waited before its first engine step, in seconds.");
  histogram(prefill_time_, "request_prefill_time_seconds", "Time from a request's first engine step to its first token.");
  histogram(decode_time_, "request_decode_time_seconds", "Time from a request's first token to its last.");
  histogram(inference_time_, "request_inference_time_seconds", "Prefill plus decode time of a request, in seconds.");
  histogram(prompt_tokens_, "request_prompt_tokens", "Prompt tokens per finished request.");
  histogram(generation_tokens_, "request_generation_tokens", "Generated tokens per finished request.");
  {
    const std::string name = prefix_ + "iteration_tokens_total";
    header(out, name, "histogram", "Tokens per engine step.");
    int64_t cumulative = 0, count = 0;
    for (size_t i = 0; i < stats.iteration_tokens_counts.size(); ++i) {
      cumulative += stats.iteration_tokens_counts[i];
      std::string le = i < kIterationTokensBounds.size() ? std::to_string(kIterationTokensBounds[i]) : "+Inf";
      sample(out, name + "_bucket", labels + ",le=\"" + le + "\"", double(cumulative));
    }
    count = cumulative;
    sample(out, name + "_sum", labels, double(stats.iteration_tokens_sum));
    sample(out, name + "_count", labels, double(count));
  }
  return out;
}

}  // namespace troupe::http
