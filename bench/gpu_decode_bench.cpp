// GPU decode benchmark on device 0 through CudaBackend, with dummy weights (no checkpoint needed):
//   (a) HBM bandwidth (device-to-device cudaMemcpy), (b) SGEMM fp32 (pedantic, as the backend)
//   and bf16 GemmEx (fp32 accumulation) rates, (b2) the bf16 GEMV kernel alone on the model's
//   linear shapes at one token vs the bandwidth roofline, (c) batch-1 decode at a 1024-token
//   context vs the bandwidth roofline, (c2) one such step op by op (bench/profiling_backend.hpp:
//   CUDA events around every backend call), (d) one 4096-token prefill vs the bf16 matmul rate,
//   (e) decode throughput at several batch sizes. Prints a table as it goes; writes JSON records
//   after every phase.
// A watchdog writes what was measured and exits when --time-limit (default 290 s) is reached.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "bench/ab_switches.hpp"
#include "bench/bench_args.hpp"
#include "bench/bench_log.hpp"
#include "bench/decode_steps.hpp"
#include "bench/device_ceilings.hpp"
#include "bench/kernel_trace.hpp"
#include "bench/profiling_backend.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "runtime/bench_record.hpp"
#include "backends/cpu_backend.hpp"
#include "models/dummy_weights.hpp"
#include "backends/graphed_model.hpp"
#include "runtime/model_config.hpp"
#include "models/model_loader.hpp"

namespace troupe {
namespace {

using bench::add_record;
using bench::cuda_ok;
using bench::elapsed_s;
using bench::median;
using bench::remaining_s;
using bench::run_steps;
using bench::say;
using bench::StepTimes;

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
  bool fp8_kv_cache = false;   // --kv-cache-dtype fp8: an e4m3 KV cache (scales 1), metrics suffixed _kvfp8
  std::string kernel_trace;    // --kernel-trace PATH: one batch-1 step's kernels as they ran (CUPTI), CSV
  std::vector<bench::AbSwitch> ab;  // --ab NAME=VALUE,...: the batch-1 step's B sides (bench/ab_switches.hpp)
  // --max-model-len N: the recorded steps' block tables as wide as a server's with that limit (its
  // split-KV partition count), the metrics suffixed _maxlen<N>; 0: context + 512.
  int64_t max_model_len = 0;
  std::string command;
};

Args g_args;


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


// The bytes of every weight as the device holds it (Backend::weight_dtype, or e4m3 with fp32 block
// scales), the embedding table apart unless tied (a decode step reads one row per token of it).
struct WeightBytes {
  int64_t read_per_step = 0;
  bool fp8 = false;
  void add(const std::string& name, const Tensor& host, DType weight_dtype) {
    int64_t bytes = 0;
    if (host.dtype() == DType::f8_e4m3) {
      fp8 = true;
      bytes = host.numel() + (host.has_block_scale() ? host.block_scale().numel() * 4 : 0);
    } else {
      bytes = host.numel() * int64_t(dtype_size(weight_dtype));
    }
    if (name == "model.embed_tokens.weight" && !tied) return;
    read_per_step += bytes;
  }
  bool tied = false;
};

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
    else if (k == "--max-model-len" && value(v)) a.max_model_len = std::atoll(v.c_str());
    else if (k == "--decode-steps" && value(v)) a.decode_steps = std::atoll(v.c_str());
    else if (k == "--prefill-tokens" && value(v)) a.prefill_tokens = std::atoll(v.c_str());
    else if (k == "--time-limit" && value(v)) a.time_limit_s = std::atof(v.c_str());
    else if (k == "--cpu-check") a.cpu_check = true;
    else if (k == "--enforce-eager") a.enforce_eager = true;
    else if (k == "--weights" && value(v)) a.bf16_weights = v == "bf16";
    else if (k == "--kv-cache-dtype" && value(v) && (v == "auto" || v == "fp8" || v == "fp8_e4m3"))
      a.fp8_kv_cache = v != "auto";
    else if (k == "--prefill-sweep" && value(v)) a.prefill_sweep = bench::parse_int_list(v);
    else if (k == "--batches" && value(v)) a.batches = bench::parse_int_list(v);
    else if (k == "--kernel-trace" && value(v)) a.kernel_trace = v;
    else if (k == "--ab" && value(v)) a.ab = bench::parse_ab_switches(v);
    else {
      std::fprintf(stderr,
                   "usage: gpu_decode_bench [--model DIR] [--out PATH] [--context 1024] [--decode-steps 20]\n"
                   "       [--prefill-tokens 4096] [--batches 1,8,32,64] [--time-limit 290] [--enforce-eager]\n"
                   "       [--prefill-sweep 512,1024,2048,8192] [--kv-cache-dtype auto|fp8] [--kernel-trace PATH]\n"
                   "       [--max-model-len N] [--ab NAME=VALUE,...]\n");
      return false;
    }
  }
  return a.context > 0 && a.decode_steps > 0 && a.prefill_tokens > 0 &&
         (a.max_model_len == 0 || a.max_model_len > a.context);
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
  bench::init_log("gpu_decode", g_args.out, g_args.command, g_args.time_limit_s);
  bench::start_watchdog();
  if (g_args.cpu_check) return cpu_check();
  cudaDeviceProp prop{};
  if (!cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;
  bench::set_log_device(prop.name);
  say("device %s, %.1f GiB; model %s; time limit %.0f s", prop.name, double(prop.totalGlobalMem) / (1 << 30),
      g_args.model.c_str(), g_args.time_limit_s);

  // (a) + (b) before the model takes the memory.
  const double bw_gbs = bench::measure_bandwidth();
  if (bw_gbs > 0)
    add_record({"hbm_bandwidth", bw_gbs, "GB/s", {}, {},
                "the HBM limit of every bytes figure here: the better of hbm_copy_bandwidth and hbm_read_bandwidth"});
  const double sheet_gbs = bench::datasheet_bandwidth();
  const auto [fp32_tf, bf16_tf] = bench::measure_matmul();
  if (fp32_tf > 0) add_record({"matmul_fp32_tflops", fp32_tf, "TFLOP/s", {}, {}, "cublasSgemm 8192^3, pedantic fp32 (no TF32), median of 10"});
  if (bf16_tf > 0) add_record({"matmul_bf16_tflops", bf16_tf, "TFLOP/s", {}, {}, "cublasGemmEx bf16 in/out 8192^3, CUBLAS_COMPUTE_32F, median of 10"});

  // (b2) The GEMV kernel alone on the model's linear shapes.
  if (auto gemv_config = ModelConfig::load(g_args.model); !gemv_config.ok()) {
    say("model config: %s", gemv_config.error().message.c_str());
  } else if (remaining_s() > 120) {
    say("bf16 GEMV alone at 1 token (median of 25 timed launches per shape):");
    bench::measure_gemv(gemv_config.value(), bw_gbs, int64_t(prop.l2CacheSize));
  }

  // (c) The model, dummy weights.
  say("weights in %s (--weights bf16|fp32)", g_args.bf16_weights ? "bf16" : "fp32");
  auto backend = cuda::CudaBackend::create(0, g_args.bf16_weights ? DType::bf16 : DType::f32);
  if (!backend.ok()) {
    say("CudaBackend: %s", backend.error().message.c_str());
    return 1;
  }
  if (g_args.fp8_kv_cache) {
    say("KV cache in fp8 (--kv-cache-dtype fp8, e4m3, scales 1)");
    if (Status s = backend.value()->set_fp8_kv_cache(true); !s.ok()) {
      say("--kv-cache-dtype fp8: %s", s.error().message.c_str());
      return 1;
    }
  }
  auto config = ModelConfig::load(g_args.model);
  if (!config.ok()) {
    say("model config: %s", config.error().message.c_str());
    return 1;
  }
  const ParamCount params = count_params(config.value());
  const std::string suffix = metric_suffix(g_args.model) + (g_args.fp8_kv_cache ? "_kvfp8" : "") +
                             (g_args.max_model_len > 0 ? "_maxlen" + std::to_string(g_args.max_model_len) : "");
  say("loading %s with dummy weights: %.3f B parameters (%.1f GB in fp32)", suffix.c_str(), double(params.total) / 1e9,
      double(params.total) * 4 / 1e9);
  // The model runs on a pass-through ProfilingBackend, so one step can be profiled op by op (c2).
  bench::ProfilingBackend profiler(*backend.value());
  std::unique_ptr<Model> model;
  WeightBytes weight_bytes;
  weight_bytes.tied = config->tie_word_embeddings;
  try {
    // The dummy loader, printing progress every few layers.
    // FP8 block checkpoints (quantization_config fp8) get FP8 projections with 128x128 scales, as
    // `--load-format dummy` gives them.
    DummyWeightOptions dummy_options;
    dummy_options.fp8_blocks = config->quantization.is_fp8() && backend.value()->keeps_fp8_weights();
    if (dummy_options.fp8_blocks) say("FP8 block weights (quantization_config fp8): projections stay e4m3 in HBM");
    WeightLoader dummy = dummy_weight_loader(dummy_options);
    const int64_t num_layers = config->num_hidden_layers;
    WeightLoader loader = [&](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
      auto weight = dummy(name, shape);
      if (weight.ok()) weight_bytes.add(name, weight.value(), backend.value()->weight_dtype());
      const std::string tag = ".input_layernorm.weight";
      if (name.size() > tag.size() && name.compare(name.size() - tag.size(), tag.size(), tag) == 0) {
        const size_t dot = name.find('.', 13);  // "model.layers.<i>."
        const int64_t layer = std::atoll(name.substr(13, dot - 13).c_str());
        if (layer % 4 == 0) say("  loading layer %lld / %lld", (long long)layer, (long long)num_layers);
      }
      return weight;
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
  graph_options.max_model_len = g_args.max_model_len > 0 ? g_args.max_model_len : g_args.context + 512;
  GraphedModel graphed(std::move(model), profiler, graph_options);
  Model& eager = graphed.inner();
  Model& decoder = g_args.enforce_eager ? eager : static_cast<Model&>(graphed);

  // Bytes one decode step must read: every weight as it is stored on the device (bf16, or e4m3 plus
  // its fp32 block scales), but the embedding table (one row per token), plus the KV cache of the
  // context (2 x layers x kv_heads x head_dim per token, bf16; 1 byte each with --kv-cache-dtype fp8).
  const ModelConfig& c = config.value();
  const double kv_elems = 2.0 * double(c.num_hidden_layers * c.num_key_value_heads * c.head_dim) * double(g_args.context);
  const double kv_elem_bytes = g_args.fp8_kv_cache ? 1.0 : 2.0;
  const double step_bytes = double(weight_bytes.read_per_step) + kv_elem_bytes * kv_elems;
  const double bytes_fp32 = 4.0 * (double(params.total - (c.tie_word_embeddings ? 0 : params.embedding)) + kv_elems);
  say("one decode step reads %.2f GB of weights (%s) + %.3f GB of KV per sequence", double(weight_bytes.read_per_step) / 1e9,
      weight_bytes.fp8 ? "FP8 projections" : "bf16", kv_elem_bytes * kv_elems / 1e9);
  double decode_b1_ms = 0;
  say("decode batch 1, context %lld, %lld timed steps", (long long)g_args.context, (long long)g_args.decode_steps);
  StepTimes b1 = run_steps(decoder, profiler, 1, 1, g_args.context, 3, g_args.decode_steps, 60);
  if (b1.ok && !b1.ms.empty()) {
    decode_b1_ms = median(b1.ms);
    const double roof_bf16 = bw_gbs > 0 ? step_bytes / (bw_gbs * 1e9) * 1e3 : 0;
    const double roof_fp32 = bw_gbs > 0 ? bytes_fp32 / (bw_gbs * 1e9) * 1e3 : 0;
    std::ostringstream note;
    note << "median of " << b1.ms.size() << " steps at context " << g_args.context
         << (g_args.enforce_eager ? ", eager (--enforce-eager)" : ", CUDA graphs")
         << "; limit = the weights as held on the device (bf16, or e4m3 + block scales) except the embedding table + bf16 KV reads / HBM limit ("
         << step_bytes / 1e9 << " GB); fp32 roofline (what the fp32 backend reads) " << roof_fp32 << " ms";
    BenchRecord r{"decode_b1_" + suffix, decode_b1_ms, "ms/token", {}, {}, note.str()};
    if (roof_bf16 > 0) {
      r.limit = roof_bf16;
      r.fraction_of_limit = roof_bf16 / decode_b1_ms;
    }
    add_record(r);
    if (sheet_gbs > 0)
      add_record({"decode_b1_" + suffix + "_vs_datasheet", decode_b1_ms, "ms/token", step_bytes / (sheet_gbs * 1e9) * 1e3,
                  step_bytes / (sheet_gbs * 1e9) * 1e3 / decode_b1_ms, "the same step against the datasheet bandwidth"});
    add_record({"decode_b1_" + suffix + "_host", median(b1.host_ms), "ms", decode_b1_ms, median(b1.host_ms) / decode_b1_ms,
                "host time until forward returns (the model's host code, staging and the launch), median; the GPU "
                "waits for it at each step since the step's inputs come after the previous step's sync"});
    if (roof_fp32 > 0) {
      add_record({"decode_b1_" + suffix + "_fp32_roofline", decode_b1_ms, "ms/token", roof_fp32, roof_fp32 / decode_b1_ms,
                  "the same step against fp32 weight + KV bytes / measured bandwidth"});
    }
  }

  if (!g_args.kernel_trace.empty() && decode_b1_ms > 0 && remaining_s() > 30) {
    bench::record_traced_step([&] { return run_steps(decoder, profiler, 1, 1, g_args.context, 2, 3, 20).ok; },
                              "decode_b1_" + suffix + "_in_graph", g_args.kernel_trace);
  }

  // --ab: the batch-1 step again under each switch, then the default again (bench/ab_switches.hpp).
  if (decode_b1_ms > 0)
    bench::run_ab_sides(g_args.ab, [&] { graphed.drop_recordings(); }, [&](const std::string& ab, const std::string& what) {
      if (remaining_s() < 30) return;
      StepTimes t = run_steps(decoder, profiler, 1, 1, g_args.context, 3, g_args.decode_steps, 60);
      if (!t.ok || t.ms.empty()) return;
      const double ms = median(t.ms), roof = bw_gbs > 0 ? step_bytes / (bw_gbs * 1e9) * 1e3 : 0;
      BenchRecord r{"decode_b1_" + suffix + ab, ms, "ms/token", {}, {},
                    "the batch-1 step above with " + what + " (step graphs recorded again, same process)"};
      if (roof > 0) {
        r.limit = roof;
        r.fraction_of_limit = roof / ms;
      }
      add_record(r);
      if (!g_args.kernel_trace.empty() && ab != "_ab_baseline_again" && remaining_s() > 30)
        bench::record_traced_step([&] { return run_steps(decoder, profiler, 1, 1, g_args.context, 2, 3, 20).ok; },
                                  "decode_b1_" + suffix + ab + "_in_graph", bench::suffixed_path(g_args.kernel_trace, ab));
    });

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
    const double linear_ms = bench::linear_ms_per_step(*backend.value(), c, bw_gbs);
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
    bench::profile_step(eager, profiler, 1, g_args.context, 3, "decode_b1_share_",
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
    // The same forward with the causal attention's FLOPs counted as well (QK^T and PV over the keys
    // each query sees: 4 x heads x head_dim x n (n + 1) / 2 a layer), the convention of MFU figures.
    const double attention = 4.0 * double(c.num_hidden_layers * c.num_attention_heads * c.head_dim) * double(n) *
                             double(n + 1) / 2.0;
    const double with_attention = (flops + attention) / (pf.ms[0] * 1e-3) / 1e12;
    BenchRecord ra{"prefill_" + std::to_string(n) + "_" + suffix + "_with_attention", with_attention, "TFLOP/s", {}, {},
                   "the same forward; FLOPs = the linear layers' (above) + causal attention's " +
                       std::to_string(attention / 1e12) + " TFLOP (4 x heads x head_dim x n (n + 1) / 2 a layer); "
                       "limit = measured bf16 GemmEx rate"};
    if (bf16_tf > 0) {
      ra.limit = bf16_tf;
      ra.fraction_of_limit = with_attention / bf16_tf;
    }
    add_record(ra);
    // (d2) The same prefill, op by op.
    if (profile && remaining_s() > 45)
      bench::profile_step(eager, profiler, n, n, 0, "prefill_" + std::to_string(n) + "_share_",
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
    if (batch > 1 && bw_gbs > 0) {
      // Weights once for the batch, each sequence's own KV.
      const double bytes = double(weight_bytes.read_per_step) + double(batch) * kv_elem_bytes * kv_elems;
      const double roof = bytes / (bw_gbs * 1e9) * 1e3;
      add_record({"decode_b" + std::to_string(batch) + "_" + suffix, ms, "ms/step", roof, roof / ms,
                  "median step at context " + std::to_string(g_args.context) + (g_args.enforce_eager ? ", eager" : ", CUDA graphs") +
                      "; limit = (weights once + every sequence's KV) bytes / HBM limit (" + std::to_string(bytes / 1e9) + " GB)"});
      if (sheet_gbs > 0)
        add_record({"decode_b" + std::to_string(batch) + "_" + suffix + "_vs_datasheet", ms, "ms/step",
                    bytes / (sheet_gbs * 1e9) * 1e3, bytes / (sheet_gbs * 1e9) * 1e3 / ms, "against the datasheet bandwidth"});
      // The largest batch, op by op: where a batched step's time goes.
      if (batch == g_args.batches.back() && remaining_s() > 40)
        bench::profile_step(eager, profiler, 1, g_args.context, 2, "decode_b" + std::to_string(batch) + "_share_",
                            "one batch-" + std::to_string(batch) + " decode step (forward + argmax) at context " +
                                std::to_string(g_args.context),
                            ms, batch);
    }
    add_record({"decode_throughput_b" + std::to_string(batch), double(batch) * 1e3 / ms, "tokens/s", {}, {},
                "median step " + std::to_string(ms) + " ms over " + std::to_string(t.ms.size()) + " steps, context " +
                    std::to_string(g_args.context) + ", " + suffix + " dummy weights" +
                    (g_args.enforce_eager ? ", eager" : ", CUDA graphs")});
  }
  say("step graphs: %lld recorded, %lld steps replayed, %lld buckets dropped", (long long)graphed.num_recorded(),
      (long long)graphed.num_replayed(), (long long)graphed.num_dropped());
  say("done in %.1f s", elapsed_s());
  bench::finish(0);  // skips freeing ~40 GB of device tensors one by one
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) {
  troupe::bench::finish(troupe::run(argc, argv));
}
