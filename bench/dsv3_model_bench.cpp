// dsv3_model_bench: a whole DeepSeek-R1 of the real shape with fewer layers on one GPU, dummy FP8
// weights (the projections stay e4m3 in HBM with their 128x128 block scales; embeddings, LM head,
// norms, router and kv_b_proj bf16), against its physical limits measured in the same run:
//   dsv3_decode_b<B>: ms per decode step at context C against the bytes the step touches
//     (every weight its ops read, FP8 with scales, summed over one profiled step -- so only the
//     experts the router chose count -- plus the latent cache of the context) / HBM bandwidth;
//   dsv3_prefill_<N>: one prefill of N tokens, FLOPs (2 x activated parameters x tokens + causal
//     attention) against the measured FP8 dense peak;
//   dsv3_decode_b1_share_*: the batch-1 step op by op.
// usage: dsv3_model_bench [--config bench/models/deepseek-r1/config.json] [--dense-layers 3]
//        [--moe-layers 8] [--context 1024] [--batches 1,64] [--prefill-tokens 4096]
//        [--time-limit 290] [--out PATH] [--enforce-eager 1] [--kernel-trace PATH]
//        [--ab NAME=VALUE,...] (from the repo root; --prefill-tokens 0: none; --ab: each decode batch
//        again with each switch set, then the default again, on the model loaded once: records
//        dsv3_decode_b<B>_ab_<name>_<value> and _ab_baseline_again, bench/ab_switches.hpp)
// Decode steps run as step graphs (CUDA graphs), as `troupe serve` runs them, unless --enforce-eager 1;
// the profiled steps and the prefill run eagerly.
// A 4,096-token prefill of 3 dense + 8 MoE layers does not fit beside their weights (about 92 GB):
// the prefill runs on fewer MoE layers (--moe-layers 2 --batches "").
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/graphed_model.hpp"
#include "bench/bench_args.hpp"
#include "bench/bench_log.hpp"
#include "bench/ab_switches.hpp"
#include "bench/decode_steps.hpp"
#include "bench/device_ceilings.hpp"
#include "bench/kernel_trace.hpp"
#include "bench/profiling_backend.hpp"
#include "models/model_loader.hpp"
#include "runtime/model_config.hpp"

namespace troupe {
namespace {

using bench::add_record;
using bench::median;
using bench::remaining_s;
using bench::say;

struct Args {
  std::string config = "bench/models/deepseek-r1/config.json";
  std::string out;
  std::string command;
  int64_t dense_layers = 3, moe_layers = 8, context = 1024, prefill_tokens = 4096;
  // --max-model-len N: the recorded steps' block tables as wide as a server's with that limit (its
  // split-KV partition count), the decode records suffixed _maxlen<N>; 0: context + 512.
  int64_t max_model_len = 0;
  std::vector<int64_t> batches = {1, 64};
  std::vector<bench::AbSwitch> ab;  // --ab NAME=VALUE,...: B sides of each decode batch (bench/ab_switches.hpp)
  double time_limit_s = 290;
  bool enforce_eager = false;
  std::string kernel_trace;  // --kernel-trace PATH: one step's kernels of each batch (and of the prefill) as they ran (CUPTI), CSV
};

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 0; i < argc; ++i) a.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (k == "--config") a.config = v;
    else if (k == "--out") a.out = v;
    else if (k == "--dense-layers") a.dense_layers = std::atoll(v.c_str());
    else if (k == "--moe-layers") a.moe_layers = std::atoll(v.c_str());
    else if (k == "--context") a.context = std::atoll(v.c_str());
    else if (k == "--max-model-len") a.max_model_len = std::atoll(v.c_str());
    else if (k == "--prefill-tokens") a.prefill_tokens = std::atoll(v.c_str());
    else if (k == "--time-limit") a.time_limit_s = std::atof(v.c_str());
    else if (k == "--enforce-eager") a.enforce_eager = v == "1" || v == "true";
    else if (k == "--batches") a.batches = bench::parse_int_list(v);
    else if (k == "--kernel-trace") a.kernel_trace = v;
    else if (k == "--ab") a.ab = bench::parse_ab_switches(v);
    else return false;
  }
  return a.dense_layers >= 0 && a.moe_layers >= 0 && a.dense_layers + a.moe_layers > 0 && a.context > 0 &&
         (a.max_model_len == 0 || a.max_model_len > a.context);
}

// A folder holding R1's config.json with fewer layers (the first `dense` dense, then `moe` MoE).
std::string reduced_config_dir(const Args& a) {
  return bench::reduced_deepseek_config_dir(a.config, a.dense_layers, a.moe_layers, "troupe_dsv3_model_bench");
}

// Parameters one token activates in the decoder layers (attention, dense MLP or shared + top-k
// experts + router) and the LM head's.
double activated_params(const ModelConfig& c) {
  const MlaConfig& m = c.mla;
  const double h = double(c.hidden_size), heads = double(c.num_attention_heads);
  const double attention = h * double(m.q_lora_rank) + double(m.q_lora_rank) * heads * double(m.qk_head_dim()) +
                           h * double(m.cache_entry()) +
                           double(m.kv_lora_rank) * heads * double(m.qk_nope_head_dim + m.v_head_dim) +
                           heads * double(m.v_head_dim) * h;
  const double dense = 3.0 * h * double(c.intermediate_size);
  const double moe = 3.0 * h * double(c.moe.moe_intermediate_size) *
                         double(c.moe.num_experts_per_tok + c.moe.n_shared_experts) +
                     h * double(c.moe.n_routed_experts);
  double total = 0;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) total += attention + (c.moe.is_moe_layer(i) ? moe : dense);
  return total;
}

double profiled_weight_bytes(const std::vector<bench::OpProfile>& ops) {
  double bytes = 0;
  for (const auto& op : ops) bytes += op.weight_bytes;
  return bytes;
}

int run(int argc, char** argv) {
  Args args;
  if (!parse_args(argc, argv, args)) {
    std::fprintf(stderr,
                 "usage: dsv3_model_bench [--config FILE] [--dense-layers 3] [--moe-layers 8] [--context 1024]\n"
                 "       [--batches 1,64] [--prefill-tokens 4096] [--time-limit 290] [--out PATH] [--ab NAME=VALUE,...]\n"
                 "       [--kernel-trace PATH] [--max-model-len N]\n");
    return 2;
  }
  bench::init_log("dsv3_model", args.out, args.command, args.time_limit_s);
  bench::start_watchdog();
  const std::string dir = reduced_config_dir(args);
  auto config = ModelConfig::load(dir);
  if (dir.empty() || !config.ok()) {
    say("config: %s", config.ok() ? "unreadable" : config.error().message.c_str());
    return 1;
  }
  const ModelConfig& c = config.value();
  const double bw_gbs = bench::measure_bandwidth();
  const double fp8_tf = bench::measure_fp8_matmul();
  say("HBM %.0f GB/s, FP8 dense %.0f TFLOP/s", bw_gbs, fp8_tf);
  add_record({"hbm_bandwidth", bw_gbs, "GB/s", {}, {}, "the HBM limit: the better of hbm_copy_bandwidth and hbm_read_bandwidth (bench/README.md)"});
  add_record({"matmul_fp8_tflops", fp8_tf, "TFLOP/s", {}, {},
              "FP8 dense ceiling at 8192^3, this run (bench/device_ceilings: the per-tensor cuBLASLt GEMM, or "
              "its block-scaled GEMM where the per-tensor one is refused)"});

  auto backend = cuda::CudaBackend::create(0, DType::bf16);
  if (!backend.ok()) {
    say("cuda: %s", backend.error().message.c_str());
    return 1;
  }
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, 0) == cudaSuccess) bench::set_log_device(props.name);
  bench::ProfilingBackend profiler(*backend.value());
  say("loading %lld dense + %lld MoE layers of R1 with dummy FP8 weights", (long long)args.dense_layers,
      (long long)args.moe_layers);
  auto model = load_model_with_format(dir, "dummy", profiler);
  if (!model.ok()) {
    say("load: %s", model.error().message.c_str());
    return 1;
  }
  size_t free_bytes = 0, total_bytes = 0;
  backend.value()->memory_info(&free_bytes, &total_bytes);
  say("loaded; %.1f GiB of %.1f GiB free", double(free_bytes) / (1 << 30), double(total_bytes) / (1 << 30));
  StepGraphOptions graph_options;
  graph_options.max_batch = 256;
  graph_options.max_model_len = args.max_model_len > 0 ? args.max_model_len : args.context + 512;
  const std::string maxlen = args.max_model_len > 0 ? "_maxlen" + std::to_string(args.max_model_len) : "";
  GraphedModel graphed(std::move(model.value()), profiler, graph_options);
  Model& eager = graphed.inner();
  Model& decoder = args.enforce_eager ? eager : static_cast<Model&>(graphed);
  const char* mode = args.enforce_eager ? "eager" : "CUDA graphs";
  const std::string shape = std::to_string(args.dense_layers) + " dense + " + std::to_string(args.moe_layers) +
                            " MoE layers of R1, dummy FP8 block weights";
  const double latent_bytes_per_token = double(c.num_hidden_layers * c.mla.cache_entry()) * 2.0;  // bf16 cache

  for (int64_t batch : args.batches) {
    if (remaining_s() < 40) {  // the load took what was left (about 55 s on the H200): say so
      say("decode batch %lld and after skipped: %.0f s left of --time-limit, under 40", (long long)batch,
          remaining_s());
      break;
    }
    say("decode batch %lld at context %lld", (long long)batch, (long long)args.context);
    bench::StepTimes t = bench::run_steps(decoder, profiler, batch, 1, args.context, 2, 10, 60);
    if (!t.ok || t.ms.empty()) {
      say("  decode failed");
      continue;
    }
    std::vector<bench::OpProfile> ops;
    bench::run_steps(eager, profiler, batch, 1, args.context, 0, 1, 30, &profiler, &ops);
    const double weights = profiled_weight_bytes(ops);
    const double kv = double(batch) * double(args.context) * latent_bytes_per_token;
    const double bytes = weights + kv;
    const double ms = median(t.ms), limit_ms = bytes / (bw_gbs * 1e9) * 1e3;
    std::ostringstream note;
    note << shape << "; median of " << t.ms.size() << " steps, " << mode << "; limit = (weights the step's ops read, "
         << weights / 1e9 << " GB, + latent cache " << kv / 1e9 << " GB) / measured HBM bandwidth";
    if (!maxlen.empty()) note << "; recorded steps' block tables " << graph_options.max_model_len << " tokens wide";
    add_record({"dsv3_decode_b" + std::to_string(batch) + maxlen, ms, "ms/step", limit_ms, limit_ms / ms, note.str()});
    if (!args.kernel_trace.empty() && remaining_s() > 40) {
      bench::record_traced_step(
          [&] { return bench::run_steps(decoder, profiler, batch, 1, args.context, 2, 3, 20).ok; },
          "dsv3_decode_b" + std::to_string(batch) + maxlen + "_in_graph",
          bench::traced_csv_path(args.kernel_trace, batch));
    }
    bench::run_ab_sides(args.ab, [&] { graphed.drop_recordings(); }, [&](const std::string& suffix, const std::string& what) {
      if (remaining_s() < 30) return;
      bench::StepTimes b = bench::run_steps(decoder, profiler, batch, 1, args.context, 2, 10, 60);
      if (!b.ok || b.ms.empty()) return;
      const double b_ms = median(b.ms);
      add_record({"dsv3_decode_b" + std::to_string(batch) + maxlen + suffix, b_ms, "ms/step", limit_ms, limit_ms / b_ms,
                  "the step above with " + what + " (step graphs recorded again, same process)"});
      if (!args.kernel_trace.empty() && suffix != "_ab_baseline_again" && remaining_s() > 40)
        bench::record_traced_step(
            [&] { return bench::run_steps(decoder, profiler, batch, 1, args.context, 2, 3, 20).ok; },
            "dsv3_decode_b" + std::to_string(batch) + maxlen + suffix + "_in_graph",
            bench::suffixed_path(bench::traced_csv_path(args.kernel_trace, batch), suffix));
    });
    if (batch == 1 && remaining_s() > 60)
      bench::profile_step(eager, profiler, 1, args.context, 1, "dsv3_decode_b1_share_",
                          "one batch-1 decode step of " + shape, ms);
  }

  if (args.prefill_tokens > 0 && remaining_s() > 60) {
    const int64_t n = args.prefill_tokens;
    say("prefill of %lld tokens", (long long)n);
    bench::StepTimes pf = bench::run_steps(eager, profiler, 1, n, n, 0, 1, 90);
    if (pf.ok && !pf.ms.empty() && remaining_s() > 40) {
      bench::StepTimes again = bench::run_steps(eager, profiler, 1, n, n, 0, 1, 90);
      if (again.ok && !again.ms.empty()) pf.ms[0] = std::min(pf.ms[0], again.ms[0]);
    }
    if (pf.ok && !pf.ms.empty()) {
      const MlaConfig& m = c.mla;
      const double attention_flops = double(c.num_hidden_layers) * 2.0 * double(c.num_attention_heads) *
                                     double(m.qk_head_dim() + m.v_head_dim) * double(n) * double(n) / 2.0;
      const double flops = 2.0 * activated_params(c) * double(n) + attention_flops +
                           2.0 * double(c.vocab_size) * double(c.hidden_size);
      const double tflops = flops / (pf.ms[0] * 1e-3) / 1e12;
      std::ostringstream note;
      note << shape << "; one forward of " << n << " tokens in " << pf.ms[0]
           << " ms (the faster of two); FLOPs = 2 x activated params x tokens + causal attention + LM head "
              "for the last token; limit = measured FP8 dense rate";
      add_record({"dsv3_prefill_" + std::to_string(n), tflops, "TFLOP/s", fp8_tf, tflops / fp8_tf, note.str()});
      if (remaining_s() > 45)
        bench::profile_step(eager, profiler, n, n, 0, "dsv3_prefill_" + std::to_string(n) + "_share_",
                            "one prefill of " + std::to_string(n) + " tokens of " + shape, pf.ms[0]);
      // Its kernels as they ran, with PATH's name + _prefill<N>; one prefill, every kernel of it (a
      // gap of a second never comes inside one).
      if (!args.kernel_trace.empty() && remaining_s() > 40)
        bench::record_traced_step(
            [&] { return bench::run_steps(eager, profiler, 1, n, n, 0, 1, 90).ok; },
            "dsv3_prefill_" + std::to_string(n) + "_traced",
            bench::suffixed_path(args.kernel_trace, "_prefill" + std::to_string(n)), 1000000000ull);
    }
  }
  say("step graphs: %lld recorded, %lld steps replayed, %lld buckets dropped", (long long)graphed.num_recorded(),
      (long long)graphed.num_replayed(), (long long)graphed.num_dropped());
  say("done in %.1f s", bench::elapsed_s());
  return 0;
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) { troupe::bench::finish(troupe::run(argc, argv)); }
