#include "cli/serving_benchmark.hpp"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

namespace troupe::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct RequestRecord {
  bool ok = false;
  std::string error;
  int64_t num_output_tokens = 0;
  double ttft_ms = 0, e2e_ms = 0;
  std::vector<double> itl_ms;
};

httplib::Headers auth_headers(const ServingBenchmarkOptions& options) {
  httplib::Headers headers;
  if (!options.api_key.empty()) headers.emplace("Authorization", "Bearer " + options.api_key);
  return headers;
}

// One streaming completion; SSE events are split on blank lines.
RequestRecord run_one(const ServingBenchmarkOptions& options, const std::string& model, const std::vector<int>& prompt) {
  RequestRecord record;
  httplib::Client client(options.host, options.port);
  client.set_read_timeout(std::chrono::seconds(options.timeout_s));
  json body{{"model", model},       {"prompt", prompt},           {"max_tokens", options.output_len},
            {"temperature", 0.0},   {"ignore_eos", true},         {"stream", true},
            {"stream_options", {{"include_usage", true}}}};
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/completions";
  request.headers = auth_headers(options);
  request.set_header("Content-Type", "application/json");
  request.body = body.dump();
  std::string buffer, raw;
  const Clock::time_point start = Clock::now();
  Clock::time_point last = start;
  bool first = true;
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    buffer.append(data, size);
    if (raw.size() < 512) raw.append(data, std::min<size_t>(size, 512));
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      std::string payload = event.substr(6);
      if (payload == "[DONE]") continue;
      json chunk = json::parse(payload, nullptr, false);
      if (chunk.is_discarded()) continue;
      if (chunk.contains("usage") && chunk["usage"].is_object())
        record.num_output_tokens = chunk["usage"].value("completion_tokens", int64_t(0));
      if (!chunk.contains("choices") || chunk["choices"].empty()) continue;
      const Clock::time_point now = Clock::now();
      if (first) {
        record.ttft_ms = ms_between(start, now);
        first = false;
      } else {
        record.itl_ms.push_back(ms_between(last, now));
      }
      last = now;
    }
    return true;
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  const bool sent = client.send(request, response, error);
  record.e2e_ms = ms_between(start, Clock::now());
  if (!sent) {
    record.error = "connection: " + httplib::to_string(error);
  } else if (response.status != 200) {
    record.error = "HTTP " + std::to_string(response.status) + ": " + raw.substr(0, 200);
  } else {
    record.ok = !first;
    if (first) record.error = "no tokens streamed";
  }
  return record;
}

std::string first_model(const ServingBenchmarkOptions& options) {
  httplib::Client client(options.host, options.port);
  auto res = client.Get("/v1/models", auth_headers(options));
  if (!res || res->status != 200) return "";
  json models = json::parse(res->body, nullptr, false);
  if (models.is_discarded() || !models.contains("data") || models["data"].empty()) return "";
  return models["data"][0].value("id", "");
}

}  // namespace

LatencySummary summarize(std::vector<double> values) {
  LatencySummary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  auto at = [&](double q) { return values[std::min(values.size() - 1, size_t(q * double(values.size() - 1) + 0.5))]; };
  s.median = at(0.5);
  s.p90 = at(0.9);
  s.p99 = at(0.99);
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / double(values.size());
  return s;
}

Result<ServingBenchmarkResult> run_serving_benchmark(const ServingBenchmarkOptions& options) {
  const std::string model = options.model.empty() ? first_model(options) : options.model;
  if (model.empty())
    return make_error(ErrorCode::unavailable, "no server answered GET /v1/models at " + options.host + ":" +
                                                  std::to_string(options.port));
  std::mt19937 rng(uint32_t(options.seed));
  std::vector<std::vector<int>> prompts(size_t(options.num_prompts));
  for (auto& p : prompts) {
    p.resize(size_t(options.input_len));
    for (auto& t : p) t = 5 + int(rng() % uint32_t(std::max<int64_t>(1, options.vocab_limit - 5)));
  }

  std::vector<RequestRecord> records(prompts.size());
  std::atomic<size_t> next{0};
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> clients;
  const size_t num_clients = size_t(std::min<int64_t>(options.max_concurrency, options.num_prompts));
  for (size_t c = 0; c < num_clients; ++c) {
    clients.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < prompts.size();) records[i] = run_one(options, model, prompts[i]);
    });
  }
  for (auto& t : clients) t.join();

  ServingBenchmarkResult result;
  result.duration_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> ttft, tpot, itl, e2e;
  for (const auto& r : records) {
    if (!r.ok) {
      ++result.num_failed;
      if (result.errors.size() < 5) result.errors.push_back(r.error);
      continue;
    }
    ++result.num_completed;
    result.num_output_tokens += r.num_output_tokens;
    ttft.push_back(r.ttft_ms);
    e2e.push_back(r.e2e_ms);
    if (r.num_output_tokens > 1) tpot.push_back((r.e2e_ms - r.ttft_ms) / double(r.num_output_tokens - 1));
    itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
  }
  result.request_throughput = double(result.num_completed) / result.duration_s;
  result.output_throughput = double(result.num_output_tokens) / result.duration_s;
  result.ttft_ms = summarize(ttft);
  result.tpot_ms = summarize(tpot);
  result.itl_ms = summarize(itl);
  result.e2e_ms = summarize(e2e);
  return result;
}

}  // namespace troupe::cli
