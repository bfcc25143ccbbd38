// Overlapped scheduling (issue #19 item 2), measured through the whole engine with dummy weights:
//   overlap_host_gap: per decode step, the time the device waited for the host: the step's wall
//     time minus its forward and sampling, as the thread running them measures it (the loop
//     thread without overlap, the StepWorker with it; LlmEngine::step_busy_seconds), at each
//     --batches size with --async-scheduling off and on; and TPOT (wall time per decode token of
//     a stream) beside it.
// NOTE: the host work inside the forward (attention metadata, staging the inputs, the graph
// launch) counts as busy in both modes: the worker does it after the step before was sampled, so
// overlap does not hide it (only a device-side token feed would); TPOT shows all of it.
// Records: overlap_host_gap_ms_b<B>_{off,on} (limit: the gap without overlap, so
// fraction_of_limit is the share of it left) and tpot_ms_b<B>_{off,on} (limit: the forward and
// sampling time per step, the TPOT of a host that cost nothing).
// On the GPU machine (Llama-3-8B shape, CUDA graphs as served):
//   overlap_host_gap_bench --model bench/models/llama3-8b --device cuda --batches 1,64
// Smoke run on a CPU:
//   overlap_host_gap_bench --model bench/models/llama-small-8k --device cpu --batches 1,4 --steps 16
// Usage: overlap_host_gap_bench [--model DIR] [--device auto|cpu|cuda] [--batches 1,64] [--steps N]
//                               [--warmup N] [--threads N] [--enforce-eager] [--on-first] [--out FILE]
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "runtime/bench_record.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace troupe;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "overlap_host_gap_bench: %s\n", why.c_str());
  std::exit(1);
}

struct Args {
  std::string model = "bench/models/llama3-8b";
  std::string device = "auto";
  std::vector<int64_t> batches = {1, 64};
  int64_t steps = 128;   // decode steps measured
  int64_t warmup = 16;   // decode steps before the window (graph captures, allocator warm-up)
  int64_t threads = 0;
  bool enforce_eager = false;
  bool on_first = false;  // --on-first: the engine with overlap runs first (to see order effects)
  std::string out;
  std::string command;
};

struct Snapshot {
  Clock::time_point at;
  int64_t num_steps = 0;
  double busy_s = 0;
};

struct Measured {
  double host_gap_ms = 0;  // per decode step
  double busy_ms = 0;      // forward + sampling per decode step
  double tpot_ms = 0;
  int64_t num_steps = 0;
};

// `batch` greedy streams of 16-token prompts; the window runs from the moment every stream has
// `warmup` tokens (so every step in it decodes all of them: they were submitted one by one and
// may be a few steps apart) for `steps` steps (until the one ahead has `steps` more).
Measured measure(LlmEngine& engine, int64_t batch, const Args& a, uint32_t seed) {
  const int32_t vocab = int32_t(engine.model_config().vocab_size);
  std::mt19937 rng(seed);
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<int64_t> counts(size_t(batch), 0);
  int64_t num_at_warmup = 0, num_ended = 0, end_at = -1;
  Snapshot begin, end;
  bool have_end = false;
  std::string failure;
  auto snapshot = [&] { return Snapshot{Clock::now(), engine.num_steps(), engine.step_busy_seconds()}; };
  for (int64_t i = 0; i < batch; ++i) {
    GenerationRequest r;
    r.request_id = "s" + std::to_string(seed) + "-" + std::to_string(i);
    for (int k = 0; k < 16; ++k) r.prompt_ids.push_back(int32_t(5 + rng() % uint32_t(vocab - 5)));
    r.params.temperature = 0.0;
    r.params.max_tokens = a.warmup + 2 * a.steps + 8;
    r.params.ignore_eos = true;
    Status s = engine.submit(r, [&, i](const GenerationOutput& o) {
      // The engine thread: snapshots between two steps.
      std::lock_guard lock(mutex);
      int64_t& n = counts[size_t(i)];
      n += int64_t(o.new_token_ids.size());
      if (n == a.warmup && o.new_token_ids.size() == 1 && ++num_at_warmup == batch) {
        begin = snapshot();
        end_at = *std::max_element(counts.begin(), counts.end()) + a.steps;
      }
      if (n == end_at && !have_end) {
        end = snapshot();
        have_end = true;
      }
      if (o.finish_reason != FinishReason::none) {
        if (o.finish_reason != FinishReason::length) failure = o.error_message;
        ++num_ended;
        cv.notify_all();
      }
    });
    if (!s.ok()) die(s.error().message);
  }
  std::unique_lock lock(mutex);
  cv.wait(lock, [&] { return num_ended == batch; });
  if (!failure.empty()) die("a stream failed: " + failure);
  if (num_at_warmup != batch || !have_end) die("the window was not seen (streams more than --steps apart?)");
  Measured m;
  m.num_steps = end.num_steps - begin.num_steps;
  if (m.num_steps < 1) die("no steps in the window");
  const double wall_s = std::chrono::duration<double>(end.at - begin.at).count();
  const double busy_s = end.busy_s - begin.busy_s;
  m.host_gap_ms = 1e3 * std::max(0.0, wall_s - busy_s) / double(m.num_steps);
  m.busy_ms = 1e3 * busy_s / double(m.num_steps);
  m.tpot_ms = 1e3 * wall_s / double(a.steps);  // the stream ahead got one token per step
  return m;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  a.command = argv[0];
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(arg + " needs a value");
      return argv[++i];
    };
    try {
      if (arg == "--model") a.model = value();
      else if (arg == "--device") a.device = value();
      else if (arg == "--batches") a.batches = parse_list(value());
      else if (arg == "--steps") a.steps = std::stoll(value());
      else if (arg == "--warmup") a.warmup = std::stoll(value());
      else if (arg == "--threads") a.threads = std::stoll(value());
      else if (arg == "--enforce-eager") a.enforce_eager = true;
      else if (arg == "--on-first") a.on_first = true;
      else if (arg == "--out") a.out = value();
      else die("unknown argument " + arg);
    } catch (const std::exception&) {
      die("bad value for " + arg);
    }
    const bool flag = arg == "--enforce-eager" || arg == "--on-first";
    a.command += " " + arg + (flag ? "" : std::string(" ") + argv[i]);
  }
  if (a.batches.empty() || a.steps < 2 || a.warmup < 1 || a.threads < 0) die("bad sizes");
  for (int64_t b : a.batches)
    if (b < 1 || b > 1024) die("batch sizes must be in [1, 1024]");
  const int64_t max_batch = *std::max_element(a.batches.begin(), a.batches.end());

  std::vector<BenchRecord> records;
  std::string device_name;
  std::printf("%-6s %-8s %14s %14s %10s %8s\n", "batch", "overlap", "host gap ms", "fwd+sample ms", "TPOT ms", "steps");
  std::vector<std::vector<Measured>> by_mode(2);
  for (int round = 0; round < 2; ++round) {
    const int overlap = a.on_first ? 1 - round : round;
    Config config;
    config.model = a.model;
    config.load_format = "dummy";
    config.device = a.device;
    config.num_threads = a.threads;
    config.enforce_eager = a.enforce_eager;
    config.async_scheduling = overlap == 1;
    config.enable_prefix_caching = false;
    config.max_num_seqs = std::max<int64_t>(max_batch, 1);
    config.max_model_len = 16 + a.warmup + 2 * a.steps + 16;
    auto built = backends::build_engine(config);
    if (!built.ok()) die(built.error().message);
    LlmEngine& engine = **built;
    if (engine.is_overlapping() != (overlap == 1)) die("--async-scheduling was not taken (a pipeline?)");
    device_name = engine.backend_name();
    engine.start();
    for (size_t k = 0; k < a.batches.size(); ++k) {
      const int64_t b = a.batches[k];
      const Measured m = measure(engine, b, a, uint32_t(1 + k));
      by_mode[size_t(overlap)].push_back(m);  // NOTE: in --batches order
      std::printf("%-6lld %-8s %14.3f %14.3f %10.3f %8lld\n", (long long)b, overlap ? "on" : "off", m.host_gap_ms,
                  m.busy_ms, m.tpot_ms, (long long)m.num_steps);
    }
    engine.stop();
  }
  for (size_t k = 0; k < a.batches.size(); ++k) {
    const std::string b = std::to_string(a.batches[k]);
    const Measured& off = by_mode[0][k];
    for (int overlap = 0; overlap < 2; ++overlap) {
      const Measured& m = by_mode[size_t(overlap)][k];
      const std::string mode = overlap ? "on" : "off";
      BenchRecord gap;
      gap.metric = "overlap_host_gap_ms_b" + b + "_" + mode;
      gap.value = m.host_gap_ms;
      gap.unit = "ms";
      gap.limit = off.host_gap_ms;
      gap.fraction_of_limit = off.host_gap_ms > 0 ? m.host_gap_ms / off.host_gap_ms : 0.0;
      gap.note = "per decode step: wall time minus forward + sampling (the time the device waited for the host), " +
                 b + " greedy streams, " + a.model + " (dummy weights), --async-scheduling " + mode +
                 "; limit: the gap without overlap";
      gap.extra = {{"batch", double(a.batches[k])}, {"steps", double(m.num_steps)}, {"busy_ms", m.busy_ms}};
      records.push_back(gap);
      BenchRecord tpot;
      tpot.metric = "tpot_ms_b" + b + "_" + mode;
      tpot.value = m.tpot_ms;
      tpot.unit = "ms";
      tpot.limit = m.busy_ms;
      tpot.fraction_of_limit = m.tpot_ms > 0 ? m.busy_ms / m.tpot_ms : 0.0;
      tpot.note = "wall time per decode token of a stream, " + b + " greedy streams, --async-scheduling " + mode +
                  "; limit: forward + sampling per step (a host that cost nothing)";
      tpot.extra = {{"batch", double(a.batches[k])}};
      records.push_back(tpot);
    }
  }
  const std::string device = device_name + " (host: " + host_device_name() + ")";
  auto written = write_bench_records(records, "overlap_host_gap_" + a.device, a.out, a.command, device);
  if (!written.ok()) die(written.error().message);
  std::printf("wrote %s\n", written.value().c_str());
  return 0;
}
