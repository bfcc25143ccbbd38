// tp_decode_bench: decode steps of one model with dummy weights on 1 GPU and on N GPUs of one
// stage (tensor parallel over NCCL, as `troupe serve -tp N` runs them), from the same run:
//   tp<N>_vs_tp1_decode_b<B>_latency: step time at TP=N over TP=1 (#22's goal at batch 1: <= 0.6);
//     the limit is 1 / N (the weights split N ways, nothing else costing), fraction = limit / value;
//   DeepSeek-V3 folders, both --all2all-backend modes at TP=N:
//     tp<N>_all_to_all_vs_allgather_reducescatter_decode_b<B>: the dispatching mode's step time
//     over the partial-sum mode's (< 1: dispatching is faster).
// Steps run eagerly (a tensor-parallel stage records no step graphs yet). Needs >= 2 GPUs: with
// fewer it writes no record and says so.
// usage: tp_decode_bench [--model bench/models/llama3-8b] [--tp 0 (all GPUs)] [--batches 1,64]
//        [--context 1024] [--dense-layers D --moe-layers M (DeepSeek: fewer layers)]
//        [--time-limit 290] [--out PATH]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backends/backend_factory.hpp"
#include "backends/stage_model_factory.hpp"
#include "bench/bench_args.hpp"
#include "bench/bench_log.hpp"
#include "bench/decode_steps.hpp"
#include "bench/device_ceilings.hpp"
#include "runtime/model_config.hpp"

namespace troupe {
namespace {

using bench::add_record;
using bench::median;
using bench::say;

struct Args {
  std::string model = "bench/models/llama3-8b";
  std::string out;
  std::string command;
  int64_t tp = 0, context = 1024, dense_layers = -1, moe_layers = -1;
  std::vector<int64_t> batches = {1, 64};
  double time_limit_s = 290;
};

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 0; i < argc; ++i) a.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (k == "--model") a.model = v;
    else if (k == "--out") a.out = v;
    else if (k == "--tp") a.tp = std::atoll(v.c_str());
    else if (k == "--context") a.context = std::atoll(v.c_str());
    else if (k == "--dense-layers") a.dense_layers = std::atoll(v.c_str());
    else if (k == "--moe-layers") a.moe_layers = std::atoll(v.c_str());
    else if (k == "--time-limit") a.time_limit_s = std::atof(v.c_str());
    else if (k == "--batches") a.batches = bench::parse_int_list(v);
    else return false;
  }
  return a.context > 0 && a.tp >= 0 && (a.dense_layers < 0) == (a.moe_layers < 0);
}

// The model folder, or a copy of its config.json with fewer layers (DeepSeek).
std::string model_dir(const Args& a) {
  if (a.dense_layers < 0) return a.model;
  return bench::reduced_deepseek_config_dir(a.model + "/config.json", a.dense_layers, a.moe_layers,
                                            "troupe_tp_decode_bench");
}

// Median ms of a decode step at batch `batch` on `tp` GPUs (0 when it could not run).
double decode_ms(const std::string& dir, int64_t tp, const std::string& all2all_backend, int64_t batch,
                 int64_t context) {
  Config config;
  config.model = dir;
  config.load_format = "dummy";
  config.device = "cuda";
  config.tensor_parallel_size = tp;
  config.all2all_backend = all2all_backend;
  auto backend = backends::make_backend(config, 0, tp);
  if (!backend.ok()) {
    say("  backend: %s", backend.error().message.c_str());
    return 0;
  }
  auto model = backends::load_stage_model(config, *backend.value());
  if (!model.ok()) {
    say("  load: %s", model.error().message.c_str());
    return 0;
  }
  const bench::StepTimes t = bench::run_steps(*model.value(), *backend.value(), batch, 1, context, 3, 10,
                                              std::min(60.0, bench::remaining_s() - 20));
  if (!t.ok || t.ms.empty()) return 0;
  const double ms = median(t.ms);
  say("  TP=%lld %s batch %lld: %.3f ms per step", static_cast<long long>(tp), all2all_backend.c_str(),
      static_cast<long long>(batch), ms);
  return ms;
}

int run(int argc, char** argv) {
  Args args;
  if (!parse_args(argc, argv, args)) {
    std::fprintf(stderr,
                 "usage: tp_decode_bench [--model DIR] [--tp N] [--batches 1,64] [--context 1024]\n"
                 "       [--dense-layers D --moe-layers M] [--time-limit 290] [--out PATH]\n");
    return 2;
  }
  bench::init_log("tp_decode", args.out, args.command, args.time_limit_s);
  bench::start_watchdog();
  int num_gpus = 0;
  if (cudaGetDeviceCount(&num_gpus) != cudaSuccess) num_gpus = 0;
  const int64_t tp = args.tp > 0 ? args.tp : num_gpus;
  if (num_gpus < 2 || tp < 2 || tp > num_gpus) {
    say("tensor parallel needs >= 2 GPUs: %d visible, --tp %lld; nothing measured", num_gpus,
        static_cast<long long>(args.tp));
    return 0;
  }
  const std::string dir = model_dir(args);
  auto config = ModelConfig::load(dir);
  if (dir.empty() || !config.ok()) {
    say("config: %s", config.ok() ? "unreadable" : config.error().message.c_str());
    return 1;
  }
  const bool deepseek = config->architecture == "DeepseekV3ForCausalLM";
  const std::string tag = "tp" + std::to_string(tp);
  for (int64_t batch : args.batches) {
    const std::string b = "_decode_b" + std::to_string(batch);
    const double one = decode_ms(dir, 1, "allgather_reducescatter", batch, args.context);
    const double many = decode_ms(dir, tp, "allgather_reducescatter", batch, args.context);
    if (one > 0 && many > 0) {
      const double ratio = many / one, limit = 1.0 / double(tp);
      add_record({tag + "_vs_tp1" + b + "_latency", ratio, "ratio", limit, limit / ratio,
                  "step time at TP=" + std::to_string(tp) + " over TP=1 (" + std::to_string(many) + " / " +
                      std::to_string(one) + " ms); limit 1/N: the weights split N ways"});
    }
    if (!deepseek || many <= 0) continue;
    const double dispatched = decode_ms(dir, tp, "all_to_all", batch, args.context);
    if (dispatched > 0)
      add_record({tag + "_all_to_all_vs_allgather_reducescatter" + b, dispatched / many, "ratio", std::nullopt,
                  std::nullopt,
                  "--all2all-backend all_to_all over allgather_reducescatter at TP=" + std::to_string(tp) + " (" +
                      std::to_string(dispatched) + " / " + std::to_string(many) + " ms)"});
  }
  return 0;
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) { troupe::bench::finish(troupe::run(argc, argv)); }
