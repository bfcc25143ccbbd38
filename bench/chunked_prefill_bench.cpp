// Chunked prefill under decode load on the CPU backend:
//   chunked_prefill_itl_p99: p99 over median of the inter-token latencies of --streams decode
//     streams while --prompts prompts of --prompt-len tokens arrive one after another (each once the
//     previous one has its first token), with --max-num-batched-tokens per step shared between the
//     decode tokens (scheduled first) and the prompts' chunks; goal <= 2.
// Latencies are taken from every stream's token arrivals between the first long prompt's arrival
// and the last one's first token.
// Usage: chunked_prefill_bench [--threads N] [--streams N] [--prompts N] [--prompt-len N]
//                              [--max-num-batched-tokens N] [--out FILE] [--model DIR]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "runtime/bench_record.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace troupe;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "chunked_prefill_bench: %s\n", why.c_str());
  std::exit(1);
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "bench/models/llama-small-16k", out;
  int64_t threads = 1, streams = 64, prompts = 3, prompt_len = 8192, budget = 256;
  std::string command = argv[0];
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--model") model = value();
    else if (arg == "--threads") threads = std::stoll(value());
    else if (arg == "--streams") streams = std::stoll(value());
    else if (arg == "--prompts") prompts = std::stoll(value());
    else if (arg == "--prompt-len") prompt_len = std::stoll(value());
    else if (arg == "--max-num-batched-tokens") budget = std::stoll(value());
    else if (arg == "--out") out = value();
    else die("unknown argument " + arg);
    command += " " + arg + " " + argv[i];
  }
  if (threads < 1 || streams < 1 || prompts < 1 || prompt_len < 2 || budget <= streams) die("bad sizes");
  Config config;
  config.model = model;
  config.load_format = "dummy";
  config.device = "cpu";
  config.num_threads = threads;
  config.block_size = 16;
  config.max_model_len = prompt_len + 64;
  config.max_num_batched_tokens = budget;
  config.enable_prefix_caching = false;  // every long prompt is computed
  config.num_kv_blocks = (prompt_len / 16 + 2) * 2 + streams * 64;
  auto built = backends::build_engine(config);
  if (!built.ok()) die(built.error().message);
  LlmEngine& engine = **built;
  engine.start();
  const int32_t vocab = int32_t(engine.model_config().vocab_size);
  std::mt19937 rng(3);
  auto random_prompt = [&](int64_t n) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (auto& t : p) t = int32_t(5 + rng() % uint32_t(vocab - 5));
    return p;
  };

  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::vector<Clock::time_point>> arrivals(static_cast<size_t>(streams));
  std::atomic<bool> stop_streams{false};
  int64_t num_started = 0, num_ended = 0;
  for (int64_t i = 0; i < streams; ++i) {
    GenerationRequest r;
    r.request_id = "s" + std::to_string(i);
    r.prompt_ids = random_prompt(16);
    r.params.temperature = 0.0;
    r.params.max_tokens = config.max_model_len - 16;
    r.params.ignore_eos = true;
    Status s = engine.submit(r, [&, i](const GenerationOutput& o) {
      std::lock_guard lock(mutex);
      if (!o.new_token_ids.empty() && arrivals[size_t(i)].empty()) ++num_started;
      for (size_t k = 0; k < o.new_token_ids.size(); ++k) arrivals[size_t(i)].push_back(Clock::now());
      if (o.finish_reason != FinishReason::none) ++num_ended;
      cv.notify_all();
    });
    if (!s.ok()) die(s.error().message);
  }
  {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return num_started == streams; });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // decode-only steps first
  const auto window_start = Clock::now();
  std::vector<double> ttft;
  for (int64_t p = 0; p < prompts; ++p) {
    GenerationRequest r;
    r.request_id = "long" + std::to_string(p);
    r.prompt_ids = random_prompt(prompt_len);
    r.params.temperature = 0.0;
    r.params.max_tokens = 1;
    bool done = false;
    const auto sent = Clock::now();
    Status s = engine.submit(r, [&](const GenerationOutput& o) {
      if (o.finish_reason == FinishReason::none) return;
      std::lock_guard lock(mutex);
      if (o.finish_reason != FinishReason::length) die("a long prompt ended with " + o.error_message);
      done = true;
      cv.notify_all();
    });
    if (!s.ok()) die(s.error().message);
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return done; });
    ttft.push_back(std::chrono::duration<double>(Clock::now() - sent).count());
    std::printf("prompt %lld of %lld tokens: TTFT %.2f s\n", (long long)p, (long long)prompt_len, ttft.back());
  }
  const auto window_end = Clock::now();
  for (int64_t i = 0; i < streams; ++i) engine.cancel("s" + std::to_string(i));
  {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return num_ended == streams; });
  }
  engine.stop();

  std::vector<double> itl;
  for (const auto& a : arrivals)
    for (size_t k = 1; k < a.size(); ++k)
      if (a[k - 1] >= window_start && a[k] <= window_end)
        itl.push_back(std::chrono::duration<double>(a[k] - a[k - 1]).count());
  if (itl.size() < 100) die("too few inter-token latencies in the window");
  const double med = percentile(itl, 0.5), p99 = percentile(itl, 0.99);
  const double ratio = p99 / med;
  std::printf("chunked_prefill_itl_p99 %.3f (ITL median %.2f ms, p99 %.2f ms, max %.2f ms, %zu latencies; goal <= 2)\n",
              ratio, 1e3 * med, 1e3 * p99, 1e3 * percentile(itl, 1.0), itl.size());
  BenchRecord r;
  r.metric = "chunked_prefill_itl_p99";
  r.value = ratio;
  r.unit = "ratio";
  r.limit = 2.0;
  r.fraction_of_limit = ratio / 2.0;
  r.note = "p99 over median inter-token latency of " + std::to_string(streams) + " greedy decode streams while " +
           std::to_string(prompts) + " prompts of " + std::to_string(prompt_len) +
           " tokens arrive one after another, --max-num-batched-tokens " + std::to_string(budget) + ", " + model +
           " (dummy weights), " + std::to_string(threads) + " thread(s); limit: the goal of issue #19 (<= 2)";
  r.extra = {{"itl_median_ms", 1e3 * med},
             {"itl_p99_ms", 1e3 * p99},
             {"itl_max_ms", 1e3 * percentile(itl, 1.0)},
             {"long_prompt_ttft_median_s", percentile(ttft, 0.5)},
             {"max_num_batched_tokens", double(budget)},
             {"num_latencies", double(itl.size())}};
  const std::string device = host_device_name() + ", " + std::to_string(threads) + " thread(s)";
  auto written = write_bench_records({r}, "chunked_prefill_cpu", out, command, device);
  if (!written.ok()) die(written.error().message);
  std::printf("wrote %s\n", written.value().c_str());
  return 0;
}
