// Pipeline steps in flight on CPU worker processes:
//   pp2_vs_1stage_throughput_cpu: saturated decode throughput (generated tokens/s) of two pipeline
//     stages in two processes (this one holds stage 0 with the engine, a child process stage 1;
//     --threads each), over one process running the whole model with --threads; goal >= 1.8.
//   Also recorded (extra): the same two stages with one step at a time (no micro-batches in
//   flight), which decode no faster than one stage.
// Throughput: tokens delivered between the moment every stream has its first token and the moment
// the first stream ends (all --streams decode together), over that time; greedy, EOS ignored.
// With --rounds R the three runs repeat R times, interleaved (a busy host drifts), and the ratio
// is of the medians. The record keeps the host's load average: on a shared host, the two stages
// need two idle cores for a clean figure.
// Usage: pp_throughput_bench [--threads N] [--streams N] [--tokens N] [--prompt N] [--rounds R]
//                            [--out FILE] [--model DIR]   (run from the repository root)
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "backends/build_engine.hpp"
#include "backends/cpu_backend.hpp"
#include "engine/llm_engine.hpp"
#include "pipeline/model_stage.hpp"
#include "runtime/bench_record.hpp"
#include "runtime/model_config.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace troupe;

struct Options {
  std::string model = "bench/models/llama-pp-bench";
  int64_t threads = 1;
  int64_t streams = 32;
  int64_t tokens = 64;
  int64_t prompt = 16;
  std::string out;
  int64_t rounds = 1;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "pp_throughput_bench: %s\n", why.c_str());
  std::exit(1);
}

Config base_config(const Options& o) {
  Config config;
  config.model = o.model;
  config.load_format = "dummy";
  config.device = "cpu";
  config.num_threads = o.threads;
  config.block_size = 16;
  config.max_model_len = o.prompt + o.tokens + 16;
  config.num_kv_blocks = o.streams * ((o.prompt + o.tokens) / 16 + 2);
  config.max_num_seqs = std::max<int64_t>(256, o.streams);
  return config;
}

Result<std::unique_ptr<Backend>> cpu_backend(const Config& c) {
  return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(c.num_threads));
}

// Decode tokens/s of `streams` greedy requests decoding together (see the file comment).
double decode_throughput(LlmEngine& engine, const Options& o, const std::string& tag) {
  std::mt19937 rng(7);
  const int32_t vocab = int32_t(engine.model_config().vocab_size);
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::vector<Clock::time_point>> arrivals(size_t(o.streams));
  int64_t num_done = 0;
  for (int64_t i = 0; i < o.streams; ++i) {
    GenerationRequest r;
    r.request_id = tag + std::to_string(i);
    for (int64_t k = 0; k < o.prompt; ++k) r.prompt_ids.push_back(int32_t(5 + rng() % uint32_t(vocab - 5)));
    r.params.temperature = 0.0;
    r.params.max_tokens = o.tokens;
    r.params.ignore_eos = true;
    Status s = engine.submit(r, [&, i](const GenerationOutput& out) {
      std::lock_guard lock(mutex);
      for (size_t k = 0; k < out.new_token_ids.size(); ++k) arrivals[size_t(i)].push_back(Clock::now());
      if (out.finish_reason != FinishReason::none) {
        if (out.finish_reason != FinishReason::length) die("a request ended with " + out.error_message);
        ++num_done;
        cv.notify_all();
      }
    });
    if (!s.ok()) die(s.error().message);
  }
  std::unique_lock lock(mutex);
  cv.wait(lock, [&] { return num_done == o.streams; });
  Clock::time_point start = Clock::time_point::min(), end = Clock::time_point::max();
  for (const auto& a : arrivals) {
    start = std::max(start, a.front());
    end = std::min(end, a.back());
  }
  int64_t count = 0;
  for (const auto& a : arrivals)
    for (const auto& t : a) count += (t > start && t <= end);
  const double seconds = std::chrono::duration<double>(end - start).count();
  if (seconds <= 0 || count == 0) die("no steady decode window; raise --tokens");
  return double(count) / seconds;
}

// The child process: stage `index` of two, wired to the parent; lives until the parent closes `in`.
int run_worker(const Options& o, int in_fd, int out_fd) {
  Config config = base_config(o);
  config.pipeline_parallel_size = 2;
  auto model = ModelConfig::load(config.model);
  if (!model.ok()) die(model.error().message);
  auto specs = cluster::plan_stages(config, model->num_hidden_layers);
  if (!specs.ok()) die(specs.error().message);
  auto stage = cluster::ModelStage::prepare((*specs)[1], config, cpu_backend, "127.0.0.1");
  if (!stage.ok()) die(stage.error().message);
  const std::string hello = (*stage)->preparation().data_address + " " +
                            std::to_string((*stage)->preparation().max_kv_blocks) + "\n";
  if (write(out_fd, hello.data(), hello.size()) != ssize_t(hello.size())) die("writing to the parent");
  FILE* in = fdopen(in_fd, "r");
  char first[128], second[128];
  long long blocks = 0;
  if (std::fscanf(in, "%127s %127s %lld", first, second, &blocks) != 3) die("reading the wiring");
  Status wired = (*stage)->wire({first, second}, blocks, std::chrono::seconds(60));
  if (!wired.ok()) die(wired.error().message);
  while (std::fgetc(in) != EOF) {
  }
  stage->reset();
  return 0;
}

// Two stages: this process (stage 0, the engine) and a child running stage 1.
double pipeline_throughput(const Options& o, const char* self, int64_t steps_in_flight) {
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) die("pipe");
  const pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(to_child[1]);
    close(from_child[0]);
    std::vector<std::string> args = {self, "--worker", std::to_string(to_child[0]), std::to_string(from_child[1]),
                                     "--model", o.model, "--threads", std::to_string(o.threads),
                                     "--streams", std::to_string(o.streams), "--tokens", std::to_string(o.tokens),
                                     "--prompt", std::to_string(o.prompt)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  Config config = base_config(o);
  config.pipeline_parallel_size = 2;
  auto model = ModelConfig::load(config.model);
  if (!model.ok()) die(model.error().message);
  auto specs = cluster::plan_stages(config, model->num_hidden_layers);
  if (!specs.ok()) die(specs.error().message);
  auto stage = cluster::ModelStage::prepare((*specs)[0], config, cpu_backend, "127.0.0.1");
  if (!stage.ok()) die(stage.error().message);
  (*stage)->set_max_steps_in_flight(steps_in_flight);
  FILE* from = fdopen(from_child[0], "r");
  char address[128];
  long long child_blocks = 0;
  if (std::fscanf(from, "%127s %lld", address, &child_blocks) != 2) die("the stage-1 process did not start");
  const int64_t blocks = std::min<int64_t>(child_blocks, (*stage)->preparation().max_kv_blocks);
  const std::string wiring =
      (*stage)->preparation().data_address + " " + address + " " + std::to_string(blocks) + "\n";
  if (write(to_child[1], wiring.data(), wiring.size()) != ssize_t(wiring.size())) die("writing to the child");
  Status wired = (*stage)->wire({(*stage)->preparation().data_address, address}, blocks, std::chrono::seconds(60));
  if (!wired.ok()) die(wired.error().message);
  LlmEngine& engine = *(*stage)->engine();
  (void)decode_throughput(engine, Options{o.model, o.threads, 4, 8, o.prompt, "", 1}, "warm");
  const double tps = decode_throughput(engine, o, "pp");
  stage->reset();
  close(to_child[1]);
  int status = 0;
  waitpid(child, &status, 0);
  std::fclose(from);
  return tps;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double one = -1;
  in >> one;
  return one;
}

double whole_model_throughput(const Options& o) {
  auto built = backends::build_engine(base_config(o));
  if (!built.ok()) die(built.error().message);
  (*built)->start();
  (void)decode_throughput(**built, Options{o.model, o.threads, 4, 8, o.prompt, "", 1}, "warm");
  const double tps = decode_throughput(**built, o, "whole");
  (*built)->stop();
  return tps;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string command = argv[0];
  int worker_in = -1, worker_out = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--worker") {
      worker_in = std::stoi(value());
      worker_out = std::stoi(value());
      continue;
    }
    if (arg == "--model") o.model = value();
    else if (arg == "--threads") o.threads = std::stoll(value());
    else if (arg == "--streams") o.streams = std::stoll(value());
    else if (arg == "--tokens") o.tokens = std::stoll(value());
    else if (arg == "--prompt") o.prompt = std::stoll(value());
    else if (arg == "--out") o.out = value();
    else if (arg == "--rounds") o.rounds = std::stoll(value());
    else die("unknown argument " + arg);
    command += " " + arg + " " + argv[i];
  }
  if (o.threads < 1 || o.streams < 1 || o.tokens < 8 || o.prompt < 1 || o.rounds < 1) die("bad sizes");
  if (worker_in >= 0) return run_worker(o, worker_in, worker_out);

  const double load_before = load_average();
  std::vector<double> wholes, serials, overlaps;
  for (int64_t round = 0; round < o.rounds; ++round) {
    wholes.push_back(whole_model_throughput(o));
    std::printf("one process, whole model, %lld thread(s): %.1f tokens/s\n", (long long)o.threads, wholes.back());
    serials.push_back(pipeline_throughput(o, argv[0], 1));
    std::printf("two stages, one step at a time:           %.1f tokens/s\n", serials.back());
    overlaps.push_back(pipeline_throughput(o, argv[0], 0));
    std::printf("two stages, two micro-batches in flight:  %.1f tokens/s\n", overlaps.back());
  }
  const double whole = median(wholes), serial = median(serials), overlapped = median(overlaps);
  const double ratio = overlapped / whole;
  std::printf("pp2_vs_1stage_throughput_cpu %.3f (one step at a time: %.3f; goal >= 1.8)\n", ratio, serial / whole);

  BenchRecord r;
  r.metric = "pp2_vs_1stage_throughput_cpu";
  r.value = ratio;
  r.unit = "ratio";
  r.limit = 1.8;
  r.fraction_of_limit = ratio / 1.8;
  r.note = "saturated greedy decode, " + std::to_string(o.streams) + " streams x " + std::to_string(o.tokens) +
           " tokens (prompt " + std::to_string(o.prompt) + "), " + o.model +
           " (dummy fp32 weights): PP=2 over two CPU processes (UCX loopback), " + std::to_string(o.threads) +
           " thread(s) each, over one process with the whole model and the same threads (medians of " +
           std::to_string(o.rounds) + " interleaved rounds); limit: the goal of "
           "issue #19 (>= 1.8, higher is better)";
  r.extra = {{"whole_tokens_per_s", whole},
             {"pp2_in_flight_tokens_per_s", overlapped},
             {"pp2_one_step_at_a_time_tokens_per_s", serial},
             {"pp2_one_step_at_a_time_ratio", serial / whole},
             {"threads_per_stage", double(o.threads)},
             {"rounds", double(o.rounds)},
             {"load_average_1min_before", load_before},
             {"load_average_1min_after", load_average()}};
  const std::string device = host_device_name() + ", " + std::to_string(o.threads) + " thread(s) per process";
  auto written = write_bench_records({r}, "pp_throughput_cpu", o.out, command, device);
  if (!written.ok()) die(written.error().message);
  std::printf("wrote %s\n", written.value().c_str());
  return 0;
}
