// GPU decode benchmark on device 0 through CudaBackend, with dummy weights (no checkpoint needed):
//   (a) HBM bandwidth (device-to-device cudaMemcpy), (b) SGEMM fp32 (pedantic, as the backend)
//   and bf16 GemmEx (fp32 accumulation) rates, (b2) the bf16 GEMV kernel alone on the model's
//   linear shapes at one token vs the bandwidth roofline, (c) batch-1 decode at a 1024-token
//   context vs the bandwidth roofline, (c2) one such step op by op (bench/profiling_backend.hpp:
//   CUDA events around every backend call), (d) one 4096-token prefill vs the bf16 matmul rate,
//   (e) decode throughput at several batch sizes. Prints a table as it goes; writes JSON records
//   after every phase.
// A watchdog writes what was measured and exits when --time-limit (default 290 s) is reached.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/profiling_backend.hpp"
#include "kernels/cuda_backend.hpp"
#include "kernels/gemv.hpp"
#include "runtime/bench_record.hpp"
#include "runtime/cpu_backend.hpp"
#include "runtime/dummy_weights.hpp"
#include "runtime/graphed_model.hpp"
#include "runtime/model_config.hpp"
#include "runtime/model_loader.hpp"

namespace troupe {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string model = "bench/models/llama3-8b";  // relative: run from the repo root
  std::string out;  // "" => bench/results/gpu_decode_<date>.json
  bool bf16_weights = true;  // --weights bf16|fp32: the CUDA backend keeps matrices in bf16
  int64_t context = 1024;
  int64_t decode_steps = 20;
  int64_t prefill_tokens = 4096;
  std::vector<int64_t> prefill_sweep = {512, 1024, 2048, 8192};  // also measured, not profiled
  std::vector<int64_t> batches = {1, 8, 32, 64};
  double time_limit_s = 290;
  bool cpu_check = false;  // run the step logic on the CPU backend (a small model), no GPU
  bool enforce_eager = false;  // decode without CUDA graphs
  std::string command;
};

// Shared between the phases and the watchdog.
std::mutex g_mutex;
std::vector<BenchRecord> g_records;
Args g_args;
std::string g_device;
const Clock::time_point g_start = Clock::now();

double elapsed_s() { return std::chrono::duration<double>(Clock::now() - g_start).count(); }
double remaining_s() { return g_args.time_limit_s - elapsed_s(); }

void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char* fmt, ...) {
  std::printf("[%6.1fs] ", elapsed_s());
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::printf("\n");
  std::fflush(stdout);
}

void write_records_locked() {
  auto path = write_bench_records(g_records, "gpu_decode", g_args.out, g_args.command, g_device);
  if (path.ok()) say("records written to %s", path->c_str());
  else say("could not write records: %s", path.error().message.c_str());
}

void add_record(BenchRecord r) {
  std::lock_guard<std::mutex> lock(g_mutex);
  say("RESULT %-32s %12.4f %-10s limit %s fraction %s  (%s)", r.metric.c_str(), r.value, r.unit.c_str(),
      r.limit ? std::to_string(*r.limit).c_str() : "-",
      r.fraction_of_limit ? std::to_string(*r.fraction_of_limit).c_str() : "-", r.note.c_str());
  g_records.push_back(std::move(r));
  write_records_locked();
}

void start_watchdog() {
  std::thread([] {
    while (remaining_s() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::lock_guard<std::mutex> lock(g_mutex);
    say("time limit of %.0f s reached: writing what was measured and exiting", g_args.time_limit_s);
    write_records_locked();
    std::fflush(stdout);
    std::_Exit(3);
  }).detach();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

bool cuda_ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  say("CUDA error in %s: %s", what, cudaGetErrorString(e));
  return false;
}

// Median milliseconds of `reps` runs of `fn` (after one warm-up), timed with CUDA events.
template <class Fn>
double time_events_ms(int reps, Fn fn) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  fn();
  cudaDeviceSynchronize();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(ms);
}

// (a) Device-to-device copy of 2 GiB: bytes read + written per second, GB/s.
double measure_bandwidth() {
  const size_t bytes = size_t(2) << 30;
  void *src = nullptr, *dst = nullptr;
  if (!cuda_ok(cudaMalloc(&src, bytes), "cudaMalloc src") || !cuda_ok(cudaMalloc(&dst, bytes), "cudaMalloc dst")) {
    cudaFree(src);
    return 0;
  }
  cudaMemset(src, 1, bytes);
  const double ms = time_events_ms(10, [&] { cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice); });
  cudaFree(src);
  cudaFree(dst);
  if (!cuda_ok(cudaGetLastError(), "bandwidth copy") || ms <= 0) return 0;
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

// (b) 8192^3 products: fp32 SGEMM in pedantic math (the backend's mode) and bf16 GemmEx with fp32
// accumulation. Returns {fp32, bf16} TFLOP/s.
std::pair<double, double> measure_matmul() {
  const int n = 8192;
  const size_t count = size_t(n) * n;
  std::vector<float> host(count);
  for (size_t i = 0; i < count; ++i) host[i] = float(int((i * 2654435761u) % 2001) - 1000) * 1e-3f;
  std::vector<uint16_t> host_bf16(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &host[i], 4);
    host_bf16[i] = uint16_t(bits >> 16);
  }
  float *a = nullptr, *b = nullptr, *c = nullptr;
  uint16_t *ah = nullptr, *bh = nullptr, *ch = nullptr;
  double fp32 = 0, bf16 = 0;
  cublasHandle_t h = nullptr;
  const double flops = 2.0 * double(n) * n * n;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    say("cublasCreate failed");
    return {0, 0};
  }
  const float alpha = 1.0f, beta = 0.0f;
  if (cuda_ok(cudaMalloc(&a, count * 4), "malloc") && cuda_ok(cudaMalloc(&b, count * 4), "malloc") &&
      cuda_ok(cudaMalloc(&c, count * 4), "malloc")) {
    cudaMemcpy(a, host.data(), count * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(b, host.data(), count * 4, cudaMemcpyHostToDevice);
    cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    const double ms = time_events_ms(10, [&] {
      cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, n, b, n, &beta, c, n);
      if (s != CUBLAS_STATUS_SUCCESS) st = s;
    });
    if (st == CUBLAS_STATUS_SUCCESS && cuda_ok(cudaGetLastError(), "sgemm") && ms > 0) fp32 = flops / (ms * 1e-3) / 1e12;
    else say("cublasSgemm failed (status %d)", int(st));
  }
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  if (cuda_ok(cudaMalloc(&ah, count * 2), "malloc") && cuda_ok(cudaMalloc(&bh, count * 2), "malloc") &&
      cuda_ok(cudaMalloc(&ch, count * 2), "malloc")) {
    cudaMemcpy(ah, host_bf16.data(), count * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(bh, host_bf16.data(), count * 2, cudaMemcpyHostToDevice);
    cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    const double ms = time_events_ms(10, [&] {
      cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, ah, CUDA_R_16BF, n, bh,
                                      CUDA_R_16BF, n, &beta, ch, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT);
      if (s != CUBLAS_STATUS_SUCCESS) st = s;
    });
    if (st == CUBLAS_STATUS_SUCCESS && cuda_ok(cudaGetLastError(), "gemmex") && ms > 0) bf16 = flops / (ms * 1e-3) / 1e12;
    else say("cublasGemmEx bf16 failed (status %d)", int(st));
  }
  cudaFree(ah);
  cudaFree(bh);
  cudaFree(ch);
  cublasDestroy(h);
  return {fp32, bf16};
}

// (b2) The bf16 GEMV kernel (what CudaBackend::linear runs for <= 8 tokens) alone at one token on
// each linear shape of the model. Each shape gets enough weight copies to span 4x the L2 cache,
// used in turn, so every timed launch reads its weights from HBM; three untimed launches before
// each timed one keep the GPU busy while the host enqueues it (no launch gap inside the events).
void measure_gemv(const ModelConfig& c, double bw_gbs, int64_t l2_bytes) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  struct Shape {
    const char* name;
    int64_t out, in;
  };
  const std::vector<Shape> shapes = {{"q_proj", q, h},
                                     {"k_proj", kv, h},
                                     {"v_proj", kv, h},
                                     {"o_proj", h, q},
                                     {"gate_proj", c.intermediate_size, h},
                                     {"up_proj", c.intermediate_size, h},
                                     {"down_proj", h, c.intermediate_size},
                                     {"lm_head", c.vocab_size, h},
                                     // The fused shapes the model runs (runtime/attention.hpp, mlp.hpp).
                                     {"qkv_proj", q + 2 * kv, h},
                                     {"gate_up_proj", 2 * c.intermediate_size, h}};
  constexpr int kReps = 25, kPadding = 3;
  for (const Shape& s : shapes) {
    if (remaining_s() < 120) {
      say("  gemv %s skipped: %.0f s left", s.name, remaining_s());
      return;
    }
    const int64_t weight_bytes = s.out * s.in * 2;
    const int64_t copies = std::clamp<int64_t>((4 * l2_bytes + weight_bytes - 1) / weight_bytes, 1, 64);
    std::vector<uint16_t*> weights(size_t(copies), nullptr);
    float *x = nullptr, *y = nullptr;
    bool ok = cuda_ok(cudaMalloc(&x, size_t(s.in) * 4), "cudaMalloc x") &&
              cuda_ok(cudaMalloc(&y, size_t(s.out) * 4), "cudaMalloc y");
    for (auto& w : weights) ok = ok && cuda_ok(cudaMalloc(&w, size_t(weight_bytes)), "cudaMalloc weights");
    std::vector<cudaEvent_t> events(2 * kReps, nullptr);
    for (auto& e : events) cudaEventCreate(&e);
    double ms = 0;
    if (ok) {
      cudaMemset(x, 0x3c, size_t(s.in) * 4);  // small finite values: 0x3c3c3c3c ~ 0.0115
      for (auto* w : weights) cudaMemset(w, 0x3c, size_t(weight_bytes));
      int64_t next = 0;
      auto launch = [&] {
        const cudaError_t e = kernels::launch_gemv_bf16(x, weights[size_t(next)], nullptr, y, 1, s.out, s.in, nullptr);
        next = (next + 1) % copies;
        return e;
      };
      cudaError_t err = cudaSuccess;
      for (int64_t i = 0; i < copies + kPadding; ++i) err = err != cudaSuccess ? err : launch();  // warm-up
      for (int rep = 0; rep < kReps; ++rep) {
        for (int p = 0; p < kPadding; ++p) err = err != cudaSuccess ? err : launch();
        cudaEventRecord(events[size_t(2 * rep)]);
        err = err != cudaSuccess ? err : launch();
        cudaEventRecord(events[size_t(2 * rep + 1)]);
      }
      ok = cuda_ok(err, "launch_gemv_bf16") && cuda_ok(cudaDeviceSynchronize(), "gemv");
      std::vector<double> times;
      for (int rep = 0; ok && rep < kReps; ++rep) {
        float t = 0;
        cudaEventElapsedTime(&t, events[size_t(2 * rep)], events[size_t(2 * rep + 1)]);
        times.push_back(t);
      }
      ms = median(times);
    }
    for (auto& e : events) cudaEventDestroy(e);
    for (auto* w : weights) cudaFree(w);
    cudaFree(x);
    cudaFree(y);
    if (!ok || ms <= 0) continue;
    const double gbs = double(weight_bytes) / (ms * 1e-3) / 1e9;
    std::ostringstream note;
    note << "launch_gemv_bf16 at 1 token, W [" << s.out << " x " << s.in << "] bf16 (" << double(weight_bytes) / 1e6
         << " MB) from HBM (" << copies << " copies in turn), median of " << kReps << " CUDA-event timings; " << gbs
         << " GB/s; limit = weight bytes / measured HBM bandwidth";
    BenchRecord r{std::string("gemv_b1_") + s.name, ms, "ms", {}, {}, note.str(), {{"gb_per_s", gbs}}};
    if (bw_gbs > 0) {
      r.limit = double(weight_bytes) / (bw_gbs * 1e9) * 1e3;
      r.fraction_of_limit = *r.limit / ms;
    }
    add_record(r);
  }
}

struct ParamCount {
  int64_t total = 0;      // every parameter of the checkpoint
  int64_t embedding = 0;  // model.embed_tokens (only a row per token is read)
  int64_t layers = 0;     // decoder layers (linear weights, biases, norms)
  int64_t lm_head = 0;    // 0 when tied
};

ParamCount count_params(const ModelConfig& c) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const bool qwen2 = c.architecture == "Qwen2ForCausalLM" || c.model_type == "qwen2";
  int64_t layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size + 2 * h;
  if (c.attention_bias || qwen2) layer += q + 2 * kv;
  if (c.attention_bias && !qwen2) layer += h;
  if (c.mlp_bias) layer += 2 * c.intermediate_size + h;
  ParamCount p;
  p.embedding = c.vocab_size * h;
  p.layers = layer * c.num_hidden_layers;
  p.lm_head = c.tie_word_embeddings ? 0 : c.vocab_size * h;
  p.total = p.embedding + p.layers + h + p.lm_head;
  return p;
}

std::string take_backend_error(Backend& backend) {
  if (auto* profiling = dynamic_cast<bench::ProfilingBackend*>(&backend)) return take_backend_error(profiling->inner());
  auto* cuda = dynamic_cast<kernels::CudaBackend*>(&backend);
  return cuda ? cuda->take_error() : std::string();
}

// Sequences of one decode/prefill batch with their own blocks in one cache.
struct Batch {
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch fb;
};

// `num_seqs` sequences of `num_new` tokens each, ending at context `context`.
void fill_batch(Batch& b, int64_t num_seqs, int64_t num_new, int64_t context, int64_t vocab) {
  b.fb = ForwardBatch();
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int64_t i = 0; i < num_new; ++i) {
      b.fb.token_ids.push_back(int32_t((s * 7919 + (context - num_new + i) * 104729) % vocab));
      b.fb.positions.push_back(int32_t(context - num_new + i));
    }
    b.fb.seqs.push_back({int32_t(num_new), int32_t(context), &b.tables[size_t(s)], true});
  }
}

struct StepTimes {
  std::vector<double> ms;
  std::vector<double> host_ms;  // until forward returned (host work and launches), per timed step
  bool ok = true;
  bool finite = true;
};

// Creates a cache for `num_seqs` sequences of up to `max_context` tokens, then runs `warm` + `steps`
// steps of `num_new` tokens per sequence, the context growing from `context`. Stops early past `budget_s`.
// With `profiler` (the backend the model runs on), the last step is recorded, with a greedy argmax
// of its logits as an engine step does; its ops land in `*profile`.
StepTimes run_steps(Model& model, Backend& backend, int64_t num_seqs, int64_t num_new, int64_t context,
                    int64_t warm, int64_t steps, double budget_s, bench::ProfilingBackend* profiler = nullptr,
                    std::vector<bench::OpProfile>* profile = nullptr) {
  StepTimes out;
  const int64_t block_size = 16;
  const int64_t max_context = context + warm + steps;
  const int64_t per_seq = (max_context + block_size - 1) / block_size;
  KvCacheSpec spec = model.kv_cache_spec(num_seqs * per_seq, block_size);
  size_t free_bytes = 0, total_bytes = 0;
  const bool known = backend.memory_info(&free_bytes, &total_bytes);  // false on the CPU
  const ModelConfig& c = model.config();
  const int64_t activations =
      num_seqs * num_new * (6 * c.hidden_size + 4 * c.intermediate_size + c.vocab_size) * 4 + (int64_t(1) << 30);
  if (known && spec.total_bytes() + activations > int64_t(free_bytes)) {
    say("  skipped: needs %.1f GiB (KV %.1f GiB), %.1f GiB free", double(spec.total_bytes() + activations) / (1 << 30),
        double(spec.total_bytes()) / (1 << 30), double(free_bytes) / (1 << 30));
    out.ok = false;
    return out;
  }
  try {
    auto cache = backend.create_kv_cache(spec);
    if (!cache.ok()) {
      say("  KV cache: %s", cache.error().message.c_str());
      out.ok = false;
      return out;
    }
    Batch b;
    b.tables.resize(size_t(num_seqs));
    for (int64_t s = 0; s < num_seqs; ++s)
      for (int64_t i = 0; i < per_seq; ++i) b.tables[size_t(s)].push_back(int32_t(s * per_seq + i));
    const Clock::time_point begin = Clock::now();
    for (int64_t step = 0; step < warm + steps; ++step) {
      fill_batch(b, num_seqs, num_new, context + step, c.vocab_size);
      const bool profiled = profiler != nullptr && step + 1 == warm + steps;
      if (profiled) {
        if (backend.device() == Device::cuda) cudaDeviceSynchronize();
        profiler->start();
      }
      const Clock::time_point t0 = Clock::now();
      auto logits = model.forward(b.fb, cache.value(), LogitsMode::last_token);
      const double host_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (profiled && logits.ok()) profiler->argmax(logits.value());
      if (backend.device() == Device::cuda) cudaDeviceSynchronize();
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (profiled) *profile = profiler->stop();
      const std::string err = take_backend_error(backend);
      if (!logits.ok() || !err.empty()) {
        say("  step %lld failed: %s", (long long)step, logits.ok() ? err.c_str() : logits.error().message.c_str());
        out.ok = false;
        return out;
      }
      if (step == 0) {
        for (float v : backend.to_host(logits.value()).to_f32_vector()) out.finite = out.finite && std::isfinite(v);
        if (!out.finite) say("  warning: non-finite logits");
      }
      if (step >= warm) {
        out.ms.push_back(ms);
        out.host_ms.push_back(host_ms);
      }
      const double spent = std::chrono::duration<double>(Clock::now() - begin).count();
      if (spent > budget_s || remaining_s() < 10) {
        say("  stopping after %lld steps (%.1f s spent)", (long long)(step + 1), spent);
        break;
      }
    }
  } catch (const std::bad_alloc&) {
    say("  out of GPU memory");
    take_backend_error(backend);
    out.ok = false;
  }
  return out;
}

// The decode step's linear layers alone at batch 1, fused as the model runs them (one weight of
// each shape, zeroed, timed with CUDA events through backend.linear): milliseconds per step they
// account for, or 0 on failure.
double linear_ms_per_step(kernels::CudaBackend& backend, const ModelConfig& c, double bw_gbs) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const int64_t inter = c.intermediate_size;
  struct Op {
    const char* name;
    int64_t out, in, per_step;  // per_step: how often it runs in one step
  };
  // The model's products at one token: q/k/v and gate/up run fused (runtime/attention.hpp, mlp.hpp).
  const std::vector<Op> ops = {{"qkv_proj", q + 2 * kv, h, c.num_hidden_layers},
                               {"o_proj", h, q, c.num_hidden_layers},
                               {"gate_up_proj", 2 * inter, h, c.num_hidden_layers},
                               {"down_proj", h, inter, c.num_hidden_layers},
                               {"lm_head", c.vocab_size, h, 1}};
  double total = 0;
  try {
    for (const Op& op : ops) {
      Tensor w = backend.empty(backend.weight_dtype(), {op.out, op.in});
      Tensor x = backend.empty(DType::f32, {1, op.in});
      Tensor y = backend.empty(DType::f32, {1, op.out});
      cudaMemset(w.raw(), 0, w.nbytes());
      cudaMemset(x.raw(), 0, x.nbytes());
      const double ms = time_events_ms(20, [&] { backend.linear(x, w, Tensor(), y); });
      const std::string err = backend.take_error();
      if (!err.empty()) {
        say("  linear %s failed: %s", op.name, err.c_str());
        return 0;
      }
      const double gbs = double(w.nbytes()) / (ms * 1e-3) / 1e9;
      say("  %-12s [%6lld x %6lld] %8.4f ms  %7.1f GB/s (%4.0f%% of HBM)  x %lld per step = %8.3f ms", op.name,
          (long long)op.out, (long long)op.in, ms, gbs, bw_gbs > 0 ? 100 * gbs / bw_gbs : 0.0, (long long)op.per_step,
          ms * double(op.per_step));
      total += ms * double(op.per_step);
    }
  } catch (const std::bad_alloc&) {
    say("  out of GPU memory");
    backend.take_error();
    return 0;
  }
  return total;
}

// "linear 6144x4096" -> "linear_6144x4096".
std::string metric_name(std::string op) {
  for (char& ch : op)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return op;
}

// (c2) Runs 3 warm batch-1 steps at the bench context, then records one step (forward + argmax)
// through `profiler` and writes one record per op: its CUDA-event time summed over the step,
// against the profiled step's wall time; plus the time no op accounts for.
// `prefix`: the records' metric prefix ("decode_b1_share_", "prefill_4096_share_"); one sequence of
// `num_new` tokens at `context`, after `warm` unprofiled steps.
void profile_step(Model& model, bench::ProfilingBackend& profiler, int64_t num_new, int64_t context, int64_t warm,
                  const std::string& prefix, const std::string& what, double unprofiled_ms) {
  say("%s, op by op (CUDA events around every backend call):", what.c_str());
  std::vector<bench::OpProfile> ops;
  StepTimes t = run_steps(model, profiler, 1, num_new, context, warm, 1, 30, &profiler, &ops);
  if (!t.ok || t.ms.empty() || ops.empty()) {
    say("  profile failed");
    return;
  }
  const double step_ms = t.ms.back();
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.gpu_ms > b.gpu_ms; });
  double sum_ms = 0, host_ms = 0;
  int64_t calls = 0;
  for (const auto& op : ops) {
    sum_ms += op.gpu_ms;
    host_ms += op.host_ms;
    calls += op.calls;
  }
  const std::string& step_kind = what;
  const std::string limit_note = "limit = the profiled step's wall time, " + std::to_string(step_ms) +
                                 " ms (the unprofiled median step: " + std::to_string(unprofiled_ms) + " ms)";
  for (const auto& op : ops) {
    say("  %-24s %5lld calls %9.4f ms GPU (%5.1f%%)  %8.4f ms host inside the calls", op.name.c_str(),
        (long long)op.calls, op.gpu_ms, 100 * op.gpu_ms / step_ms, op.host_ms);
    add_record({prefix + metric_name(op.name), op.gpu_ms, "ms", step_ms, op.gpu_ms / step_ms,
                op.name + ": CUDA-event time of its " + std::to_string(op.calls) + " calls summed over " + step_kind +
                    "; " + limit_note,
                {{"calls", double(op.calls)}, {"host_ms", op.host_ms}}});
  }
  const double rest = step_ms - sum_ms;
  say("  ops %.3f ms of the %.3f ms step (%lld calls); unaccounted %.3f ms; host between calls %.3f ms", sum_ms,
      step_ms, (long long)calls, rest, profiler.host_gap_ms());
  add_record({prefix + "unaccounted", rest, "ms", step_ms, rest / step_ms,
              "step wall time minus the summed op times (" + std::to_string(sum_ms) + " ms over " +
                  std::to_string(calls) + " calls): launch gaps, host work, synchronization, event overhead; " +
                  step_kind + "; " + limit_note,
              {{"ops_ms", sum_ms}, {"calls", double(calls)}, {"unprofiled_step_ms", unprofiled_ms}}});
  add_record({prefix + "host_gap", profiler.host_gap_ms(), "ms", step_ms, profiler.host_gap_ms() / step_ms,
              "host time between backend calls (the model's own work: metadata, checks, tensor handles); it "
              "overlaps GPU work while the GPU is behind, so it is not part of the sum; host time inside the calls " +
                  std::to_string(host_ms) + " ms; " + step_kind + "; " + limit_note,
              {{"host_inside_calls_ms", host_ms}}});
}

std::string metric_suffix(const std::string& dir) {
  std::string name = dir;
  while (!name.empty() && name.back() == '/') name.pop_back();
  name = name.substr(name.find_last_of('/') + 1);
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    ch = char(std::tolower(static_cast<unsigned char>(ch)));
  }
  return name;
}

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 0; i < argc; ++i) {
    if (i) a.command += ' ';
    a.command += argv[i];
  }
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&](std::string& v) {
      if (i + 1 >= argc) return false;
      v = argv[++i];
      return true;
    };
    std::string v;
    if (k == "--model" && value(v)) a.model = v;
    else if (k == "--out" && value(v)) a.out = v;
    else if (k == "--context" && value(v)) a.context = std::atoll(v.c_str());
    else if (k == "--decode-steps" && value(v)) a.decode_steps = std::atoll(v.c_str());
    else if (k == "--prefill-tokens" && value(v)) a.prefill_tokens = std::atoll(v.c_str());
    else if (k == "--time-limit" && value(v)) a.time_limit_s = std::atof(v.c_str());
    else if (k == "--cpu-check") a.cpu_check = true;
    else if (k == "--enforce-eager") a.enforce_eager = true;
    else if (k == "--weights" && value(v)) a.bf16_weights = v == "bf16";
    else if (k == "--prefill-sweep" && value(v)) {
      a.prefill_sweep.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) a.prefill_sweep.push_back(std::atoll(item.c_str()));
    } else if (k == "--batches" && value(v)) {
      a.batches.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) a.batches.push_back(std::atoll(item.c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: gpu_decode_bench [--model DIR] [--out PATH] [--context 1024] [--decode-steps 20]\n"
                   "       [--prefill-tokens 4096] [--batches 1,8,32,64] [--time-limit 290] [--enforce-eager]\n"
                   "       [--prefill-sweep 512,1024,2048,8192]\n");
      return false;
    }
  }
  return a.context > 0 && a.decode_steps > 0 && a.prefill_tokens > 0;
}

// --cpu-check: the decode and prefill steps of this program on the CPU backend (for a tiny model
// such as tests/fixtures/models/llama-tiny), to check the batch building without a GPU.
int cpu_check() {
  CpuBackend cpu(2);
  bench::ProfilingBackend backend(cpu);  // as on the GPU; its events stay unused without one
  auto model = load_model_with_format(g_args.model, "dummy", backend);
  if (!model.ok()) {
    say("load: %s", model.error().message.c_str());
    return 1;
  }
  bool ok = true;
  for (int64_t batch : g_args.batches) {
    StepTimes t = run_steps(*model.value(), backend, batch, 1, g_args.context, 2, g_args.decode_steps, 30);
    say("cpu decode batch %lld: %s, %zu steps, median %.3f ms, finite %d", (long long)batch, t.ok ? "ok" : "FAILED",
        t.ms.size(), median(t.ms), int(t.finite));
    ok = ok && t.ok && t.finite;
  }
  // The profiled step's bookkeeping: one fused q/k/v and one o product and one MLP per layer.
  std::vector<bench::OpProfile> ops;
  StepTimes prof = run_steps(*model.value(), backend, 1, 1, g_args.context, 1, 1, 30, &backend, &ops);
  int64_t linear_calls = 0, mlp_calls = 0;
  for (const auto& op : ops) {
    say("  cpu profile: %-22s %4lld calls, %.3f ms host", op.name.c_str(), (long long)op.calls, op.host_ms);
    if (op.name.rfind("linear ", 0) == 0) linear_calls += op.calls;
    if (op.name == "mlp") mlp_calls += op.calls;
  }
  const int64_t layers = model.value()->layer_range().num_layers();
  say("cpu profile: %s, %lld linear calls (want %lld), %lld mlp calls (want %lld)", prof.ok ? "ok" : "FAILED",
      (long long)linear_calls, (long long)(2 * layers), (long long)mlp_calls, (long long)layers);
  ok = ok && prof.ok && linear_calls == 2 * layers && mlp_calls == layers;
  StepTimes pf = run_steps(*model.value(), backend, 1, g_args.prefill_tokens, g_args.prefill_tokens, 0, 1, 30);
  say("cpu prefill %lld: %s, %.3f ms, finite %d", (long long)g_args.prefill_tokens, pf.ok ? "ok" : "FAILED",
      median(pf.ms), int(pf.finite));
  return ok && pf.ok && pf.finite ? 0 : 1;
}

int run(int argc, char** argv) {
  if (!parse_args(argc, argv, g_args)) return 2;
  start_watchdog();
  if (g_args.cpu_check) return cpu_check();
  cudaDeviceProp prop{};
  if (!cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;
  g_device = prop.name;
  say("device %s, %.1f GiB; model %s; time limit %.0f s", prop.name, double(prop.totalGlobalMem) / (1 << 30),
      g_args.model.c_str(), g_args.time_limit_s);

  // (a) + (b) before the model takes the memory.
  const double bw_gbs = measure_bandwidth();
  if (bw_gbs > 0) add_record({"hbm_bandwidth", bw_gbs, "GB/s", {}, {}, "cudaMemcpy D2D of 2 GiB, (read+write)/time, median of 10"});
  const auto [fp32_tf, bf16_tf] = measure_matmul();
  if (fp32_tf > 0) add_record({"matmul_fp32_tflops", fp32_tf, "TFLOP/s", {}, {}, "cublasSgemm 8192^3, pedantic fp32 (no TF32), median of 10"});
  if (bf16_tf > 0) add_record({"matmul_bf16_tflops", bf16_tf, "TFLOP/s", {}, {}, "cublasGemmEx bf16 in/out 8192^3, CUBLAS_COMPUTE_32F, median of 10"});

  // (b2) The GEMV kernel alone on the model's linear shapes.
  if (auto gemv_config = ModelConfig::load(g_args.model); !gemv_config.ok()) {
    say("model config: %s", gemv_config.error().message.c_str());
  } else if (remaining_s() > 120) {
    say("bf16 GEMV alone at 1 token (median of 25 timed launches per shape):");
    measure_gemv(gemv_config.value(), bw_gbs, int64_t(prop.l2CacheSize));
  }

  // (c) The model, dummy weights.
  say("weights in %s (--weights bf16|fp32)", g_args.bf16_weights ? "bf16" : "fp32");
  auto backend = kernels::CudaBackend::create(0, g_args.bf16_weights ? DType::bf16 : DType::f32);
  if (!backend.ok()) {
    say("CudaBackend: %s", backend.error().message.c_str());
    return 1;
  }
  auto config = ModelConfig::load(g_args.model);
  if (!config.ok()) {
    say("model config: %s", config.error().message.c_str());
    return 1;
  }
  const ParamCount params = count_params(config.value());
  const std::string suffix = metric_suffix(g_args.model);
  say("loading %s with dummy weights: %.3f B parameters (%.1f GB in fp32)", suffix.c_str(), double(params.total) / 1e9,
      double(params.total) * 4 / 1e9);
  // The model runs on a pass-through ProfilingBackend, so one step can be profiled op by op (c2).
  bench::ProfilingBackend profiler(*backend.value());
  std::unique_ptr<Model> model;
  try {
    // The dummy loader, printing progress every few layers.
    WeightLoader dummy = dummy_weight_loader();
    const int64_t num_layers = config->num_hidden_layers;
    WeightLoader loader = [&](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
      const std::string tag = ".input_layernorm.weight";
      if (name.size() > tag.size() && name.compare(name.size() - tag.size(), tag.size(), tag) == 0) {
        const size_t dot = name.find('.', 13);  // "model.layers.<i>."
        const int64_t layer = std::atoll(name.substr(13, dot - 13).c_str());
        if (layer % 4 == 0) say("  loading layer %lld / %lld", (long long)layer, (long long)num_layers);
      }
      return dummy(name, shape);
    };
    auto loaded = load_model(config.value(), loader, profiler);
    if (!loaded.ok()) {
      say("load: %s", loaded.error().message.c_str());
      return 1;
    }
    model = std::move(loaded.value());
  } catch (const std::bad_alloc&) {
    say("load: out of GPU memory");
    return 1;
  }
  size_t free_bytes = 0, total_bytes = 0;
  backend.value()->memory_info(&free_bytes, &total_bytes);
  say("loaded; %.1f GiB of GPU memory free", double(free_bytes) / (1 << 30));
  // Decode steps run as step graphs (CUDA graphs), as `troupe serve` runs them; prefills and the
  // profiled steps run the model eagerly.
  StepGraphOptions graph_options;
  graph_options.max_batch = 256;
  graph_options.max_model_len = g_args.context + 512;  // decode contexts only
  GraphedModel graphed(std::move(model), profiler, graph_options);
  Model& eager = graphed.inner();
  Model& decoder = g_args.enforce_eager ? eager : static_cast<Model&>(graphed);

  // Bytes one decode step must read: every weight but the embedding table (one row per token),
  // plus the KV cache of the context (2 x layers x kv_heads x head_dim per token).
  const ModelConfig& c = config.value();
  const int64_t read_params = params.total - (c.tie_word_embeddings ? 0 : params.embedding);
  const double kv_elems = 2.0 * double(c.num_hidden_layers * c.num_key_value_heads * c.head_dim) * double(g_args.context);
  const double bytes_bf16 = 2.0 * (double(read_params) + kv_elems);
  const double bytes_fp32 = 4.0 * (double(read_params) + kv_elems);
  double decode_b1_ms = 0;
  say("decode batch 1, context %lld, %lld timed steps", (long long)g_args.context, (long long)g_args.decode_steps);
  StepTimes b1 = run_steps(decoder, profiler, 1, 1, g_args.context, 3, g_args.decode_steps, 60);
  if (b1.ok && !b1.ms.empty()) {
    decode_b1_ms = median(b1.ms);
    const double roof_bf16 = bw_gbs > 0 ? bytes_bf16 / (bw_gbs * 1e9) * 1e3 : 0;
    const double roof_fp32 = bw_gbs > 0 ? bytes_fp32 / (bw_gbs * 1e9) * 1e3 : 0;
    std::ostringstream note;
    note << "median of " << b1.ms.size() << " steps at context " << g_args.context
         << (g_args.enforce_eager ? ", eager (--enforce-eager)" : ", CUDA graphs")
         << "; limit = bf16 (checkpoint dtype) weights except the embedding table + bf16 KV reads / measured HBM bandwidth ("
         << bytes_bf16 / 1e9 << " GB); fp32 roofline (what the fp32 backend reads) " << roof_fp32 << " ms";
    BenchRecord r{"decode_b1_" + suffix, decode_b1_ms, "ms/token", {}, {}, note.str()};
    if (roof_bf16 > 0) {
      r.limit = roof_bf16;
      r.fraction_of_limit = roof_bf16 / decode_b1_ms;
    }
    add_record(r);
    add_record({"decode_b1_" + suffix + "_host", median(b1.host_ms), "ms", decode_b1_ms, median(b1.host_ms) / decode_b1_ms,
                "host time until forward returns (the model's host code, staging and the launch), median; the GPU "
                "waits for it at each step since the step's inputs come after the previous step's sync"});
    if (roof_fp32 > 0) {
      add_record({"decode_b1_" + suffix + "_fp32_roofline", decode_b1_ms, "ms/token", roof_fp32, roof_fp32 / decode_b1_ms,
                  "the same step against fp32 weight + KV bytes / measured bandwidth"});
    }
  }

  if (!g_args.enforce_eager && decode_b1_ms > 0 && remaining_s() > 100) {
    StepTimes e1 = run_steps(eager, profiler, 1, 1, g_args.context, 3, g_args.decode_steps, 60);
    if (e1.ok && !e1.ms.empty())
      add_record({"decode_b1_" + suffix + "_eager", median(e1.ms), "ms/token", {}, {},
                  "the same batch-1 step without CUDA graphs (--enforce-eager), median of " +
                      std::to_string(e1.ms.size()) + " steps"});
  }
  say("step graphs: %lld recorded, %lld steps replayed, %lld buckets dropped", (long long)graphed.num_recorded(),
      (long long)graphed.num_replayed(), (long long)graphed.num_dropped());

  // Per-op share of the batch-1 step: the linear layers timed alone.
  if (decode_b1_ms > 0 && remaining_s() > 90) {
    say("linear layers of one batch-1 decode step, each timed alone (median of 20):");
    const double linear_ms = linear_ms_per_step(*backend.value(), c, bw_gbs);
    if (linear_ms > 0) {
      say("  linear layers %.3f ms of the %.3f ms step; the rest (attention, norms, RoPE, allocation, host work) %.3f ms",
          linear_ms, decode_b1_ms, decode_b1_ms - linear_ms);
      add_record({"decode_b1_linear_share", linear_ms / decode_b1_ms, "fraction", {}, {},
                  std::string(dtype_name(backend.value()->weight_dtype())) + " linear layers timed alone per step (" + std::to_string(linear_ms) + " ms) / measured step (" +
                      std::to_string(decode_b1_ms) + " ms), " + suffix});
    }
  }

  // (c2) One warm batch-1 decode step, op by op.
  if (decode_b1_ms > 0 && remaining_s() > 75)
    profile_step(eager, profiler, 1, g_args.context, 3, "decode_b1_share_",
                 "one batch-1 decode step (forward + argmax) at context " + std::to_string(g_args.context),
                 decode_b1_ms);

  // (d) Prefill of one sequence: the headline size (profiled op by op), then the sweep.
  // Linear layers only: 2 x (layer parameters) per token, plus the LM head for the one last token.
  auto prefill = [&](int64_t n, bool profile) {
    say("prefill of %lld tokens (one warm-up, then one timed forward)", (long long)n);
    StepTimes pf = run_steps(eager, profiler, 1, n, n, 0, 1, 60);
    if (pf.ok && !pf.ms.empty() && pf.ms[0] < 20000) {
      say("  first (warm-up) prefill %.1f ms", pf.ms[0]);
      StepTimes again = run_steps(eager, profiler, 1, n, n, 0, 1, 60);
      if (again.ok && !again.ms.empty()) pf.ms[0] = std::min(pf.ms[0], again.ms[0]);
    }
    if (!pf.ok || pf.ms.empty()) return;
    const double flops = 2.0 * double(params.layers) * double(n) + 2.0 * double(params.lm_head + params.embedding * c.tie_word_embeddings);
    const double tflops = flops / (pf.ms[0] * 1e-3) / 1e12;
    std::ostringstream note;
    note << "one forward of " << n << " tokens in " << pf.ms[0]
         << " ms (the faster of two); FLOPs = 2 x decoder-layer params x tokens + LM head for the last token "
            "(attention FLOPs ignored); limit = measured bf16 GemmEx rate";
    BenchRecord r{"prefill_" + std::to_string(n) + "_" + suffix, tflops, "TFLOP/s", {}, {}, note.str()};
    if (bf16_tf > 0) {
      r.limit = bf16_tf;
      r.fraction_of_limit = tflops / bf16_tf;
    }
    add_record(r);
    // (d2) The same prefill, op by op.
    if (profile && remaining_s() > 45)
      profile_step(eager, profiler, n, n, 0, "prefill_" + std::to_string(n) + "_share_",
                   "one prefill of " + std::to_string(n) + " tokens (forward + argmax)", pf.ms[0]);
  };
  if (remaining_s() > 60) {
    prefill(g_args.prefill_tokens, true);
  } else {
    say("prefill skipped: %.0f s left", remaining_s());
  }
  for (int64_t n : g_args.prefill_sweep) {
    if (n == g_args.prefill_tokens) continue;
    if (remaining_s() < 45) {
      say("prefill %lld skipped: %.0f s left", (long long)n, remaining_s());
      continue;
    }
    prefill(n, false);
  }

  // (e) Throughput at several batch sizes.
  for (int64_t batch : g_args.batches) {
    if (remaining_s() < 30) {
      say("decode batch %lld skipped: %.0f s left", (long long)batch, remaining_s());
      continue;
    }
    say("decode throughput, batch %lld, context %lld", (long long)batch, (long long)g_args.context);
    StepTimes t = (batch == 1 && decode_b1_ms > 0) ? b1 : run_steps(decoder, profiler, batch, 1, g_args.context, 2, 10, 60);
    if (!t.ok || t.ms.empty()) continue;
    const double ms = median(t.ms);
    add_record({"decode_throughput_b" + std::to_string(batch), double(batch) * 1e3 / ms, "tokens/s", {}, {},
                "median step " + std::to_string(ms) + " ms over " + std::to_string(t.ms.size()) + " steps, context " +
                    std::to_string(g_args.context) + ", " + suffix + " dummy weights" +
                    (g_args.enforce_eager ? ", eager" : ", CUDA graphs")});
  }
  say("step graphs: %lld recorded, %lld steps replayed, %lld buckets dropped", (long long)graphed.num_recorded(),
      (long long)graphed.num_replayed(), (long long)graphed.num_dropped());
  say("done in %.1f s", elapsed_s());
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fflush(stdout);
  std::_Exit(0);  // skip freeing ~40 GB of device tensors one by one
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) {
  const int code = troupe::run(argc, argv);
  std::fflush(stdout);
  std::_Exit(code);  // the watchdog thread may still be sleeping
}
