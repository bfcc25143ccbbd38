#include "cli/vllm_flags.hpp"

#include <CLI/CLI.hpp>

namespace troupe::cli {
namespace {

// vLLM flags whose absence changes nothing troupe computes: accepted with a warning.
// {flag, takes a value}.
struct IgnoredFlag {
  const char* name;
  bool takes_value;
};
constexpr IgnoredFlag kIgnoredFlags[] = {
    {"--trust-remote-code", false},          {"--disable-log-stats", false},
    {"--disable-frontend-multiprocessing", false}, {"--disable-custom-all-reduce", false},
    {"--disable-fastapi-docs", false},       {"--enable-chunked-prefill", false},
    {"--disable-uvicorn-access-log", false}, {"--enable-server-load-tracking", false},
    {"--uvicorn-log-level", true},           {"--download-dir", true},
    {"--swap-space", true},                  {"--max-log-len", true},
    {"--distributed-executor-backend", true}, {"--max-parallel-loading-workers", true},
    {"--worker-cls", true},                  {"--tokenizer-mode", true},
    {"--max-seq-len-to-capture", true},      {"--compilation-config", true},
    {"--collect-detailed-traces", true},     {"--otlp-traces-endpoint", true},
    {"--response-role", true},               {"--task", true},
    {"--enable-expert-parallel", false},  // troupe's routed experts are always expert-parallel under -tp
};

// vLLM flags that would change what the model computes or serves: refused. {flag, why}.
struct RefusedFlag {
  const char* name;
  const char* why;
};
constexpr RefusedFlag kRefusedFlags[] = {
    {"--quantization", "troupe serves the checkpoint's own weights (bf16/fp32, or FP8 with 128x128 block, per-tensor "
                       "or per-channel scales); no other quantization"},
    {"--tokenizer", "troupe reads the tokenizer from the model folder"},
    {"--revision", "troupe serves a local folder; check out the revision there"},
    {"--speculative-config", "speculative decoding is not implemented"},
    {"--lora-modules", "LoRA adapters are not implemented"},
    {"--max-lora-rank", "LoRA adapters are not implemented"},
    {"--cpu-offload-gb", "weight offload is not implemented"},
    {"--data-parallel-size", "use `troupe head --replicas N` for data parallel groups"},
    {"--rope-scaling", "troupe takes RoPE scaling from config.json"},
    {"--hf-overrides", "troupe takes the model's config.json as it is"},
};

bool is_refused_short(const std::string& arg) { return arg == "-dp" || arg.rfind("-dp=", 0) == 0; }

bool is_served_name_flag(const std::string& arg) {
  return arg == "--served-model-name" || arg.rfind("--served-model-name=", 0) == 0;
}

// --served-model-name takes several values, so CLI11 would keep every occurrence: only the last
// one stays (the command line's over the --config file's, which comes first).
void keep_last_served_names(std::vector<std::string>& args) {
  size_t last = args.size();
  for (size_t i = 0; i < args.size(); ++i)
    if (is_served_name_flag(args[i])) last = i;
  for (size_t i = 0; i < last;) {
    if (!is_served_name_flag(args[i])) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    if (args[i].find('=') == std::string::npos)
      while (end < last && !args[end].empty() && args[end][0] != '-') ++end;
    args.erase(args.begin() + std::ptrdiff_t(i), args.begin() + std::ptrdiff_t(end));
    last -= end - i;
  }
}

}  // namespace

std::vector<std::string> normalize_vllm_args(std::vector<std::string> args) {
  auto rewrite = [](const std::string& arg, const char* shorter, const char* longer) -> std::string {
    const std::string s = shorter;
    if (arg == s) return longer;
    if (arg.rfind(s + "=", 0) == 0) return std::string(longer) + "=" + arg.substr(s.size() + 1);
    if (arg.size() > s.size() && arg.rfind(s, 0) == 0 && arg.find_first_not_of("0123456789", s.size()) == std::string::npos)
      return std::string(longer) + "=" + arg.substr(s.size());
    return arg;
  };
  for (size_t i = 1; i < args.size(); ++i) {
    args[i] = rewrite(args[i], "-tp", "--tensor-parallel-size");
    args[i] = rewrite(args[i], "-pp", "--pipeline-parallel-size");
    if (is_refused_short(args[i])) args[i] = "--data-parallel-size" + args[i].substr(3);
  }
  keep_last_served_names(args);
  return args;
}

void add_vllm_serve_options(CLI::App& app, Config& config, VllmFlags& flags) {
  app.add_option("--served-model-name", flags.served_model_names,
                 "names clients use as `model`, the first in responses (default: the model folder's name)")
      ->expected(1, -1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--chat-template", config.chat_template,
                 "a Jinja chat template file, or the template itself, in place of the model's");
  app.add_option("--generation-config", config.generation_config,
                 "sampling defaults: auto (the model folder's generation_config.json), vllm (none) or a folder")
      ->capture_default_str();
  app.add_option("--override-generation-config", config.override_generation_config,
                 "JSON object over the generation config, e.g. '{\"temperature\": 0.5}'");
  app.add_option("--seed", config.default_request_seed,
                 "requests without a seed get one derived from this and their arrival order, so runs repeat");
  app.add_flag("--disable-log-requests,!--enable-log-requests", config.disable_log_requests,
               "no request log lines (on by default)");
  flags.ignored_values.resize(std::size(kIgnoredFlags));
  for (size_t i = 0; i < std::size(kIgnoredFlags); ++i) {
    const IgnoredFlag& f = kIgnoredFlags[i];
    if (f.takes_value) {
      app.add_option(f.name, flags.ignored_values[i], "vLLM's; accepted and ignored (a warning)")->group("vLLM");
    } else {
      app.add_flag(std::string(f.name))->description("vLLM's; accepted and ignored (a warning)")->group("vLLM");
    }
  }
  flags.refused_values.resize(std::size(kRefusedFlags));
  for (size_t i = 0; i < std::size(kRefusedFlags); ++i)
    app.add_option(kRefusedFlags[i].name, flags.refused_values[i], "vLLM's; refused")->group("vLLM");
}

Result<std::vector<std::string>> check_vllm_flags(const CLI::App& app, Config& config, const VllmFlags& flags) {
  for (size_t i = 0; i < std::size(kRefusedFlags); ++i) {
    const RefusedFlag& f = kRefusedFlags[i];
    if (app.count(f.name) == 0) continue;
    const std::string& value = flags.refused_values[i];
    // The harmless spellings of the defaults pass.
    if ((std::string(f.name) == "--data-parallel-size" && value == "1") ||
        (std::string(f.name) == "--tokenizer" && value == config.model))
      continue;
    return make_error(ErrorCode::invalid_argument,
                      std::string(f.name) + " " + value + " is not supported: " + f.why + " (docs/vllm-flags.md)");
  }
  if (!flags.served_model_names.empty()) {
    config.served_model_names = flags.served_model_names;
    config.served_model_name = flags.served_model_names.front();
  }
  std::vector<std::string> warnings;
  for (const IgnoredFlag& f : kIgnoredFlags)
    if (app.count(f.name) > 0)
      warnings.push_back(std::string(f.name) + " is vLLM's and has no effect in troupe; ignored (docs/vllm-flags.md)");
  return warnings;
}

}  // namespace troupe::cli
