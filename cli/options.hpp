#pragma once
// Binds Config fields to command-line flags (and config-file keys, which are the flag names).
// Where a flag names an environment variable, that variable is its default: the command line
// (and the config file, which becomes flags) beats the environment, which beats the default.
#include <optional>
#include <string>
#include <vector>

#include "runtime/config.hpp"

namespace CLI {
class App;
}

namespace troupe::cli {

// Flags every subcommand takes: --config, --log-level.
void add_common_options(CLI::App& app, Config& config);
// Model and engine flags: --model, --max-num-seqs, ...
void add_engine_options(CLI::App& app, Config& config);
// One --served-model-name (worker, generate; serve and head take several: vllm_flags.hpp).
void add_served_model_name_option(CLI::App& app, Config& config);
// HTTP flags; `port_flag` is "--port" for serve and "--http-port" for head.
void add_http_options(CLI::App& app, Config& config, const std::string& port_flag);
// --enable-auto-tool-choice and --tool-call-parser (part of the HTTP options).
void add_tool_call_options(CLI::App& app, Config& config);
// Cluster flags: parallel sizes, replicas, token.
void add_cluster_options(CLI::App& app, Config& config);
// `troupe serve`: --shutdown-timeout, --max-waiting-requests, --request-timeout.
// --shutdown-timeout alone (`troupe head`: its HTTP server drains on SIGTERM before the head stops).
// TLS, CORS and --root-path: `serve` and `head`.
void add_http_security_options(CLI::App& app, Config& config);
void add_shutdown_option(CLI::App& app, Config& config);
void add_lifecycle_options(CLI::App& app, Config& config);
// --heartbeat-ms, --heartbeat-timeout-ms (head and worker).
void add_heartbeat_options(CLI::App& app, Config& config);
void add_cluster_tls_options(CLI::App& app, Config& config);
// `troupe head`: --port, --request-wait-ms, --status-file.
void add_head_options(CLI::App& app, Config& config);
// `troupe worker`: --join, --token, --worker-index, --advertise-host, --no-supervise.
void add_worker_options(CLI::App& app, Config& config);

// Per-request flags of `troupe generate`.
struct GenerateOptions {
  std::string prompt;
  std::string prompt_ids;  // "1,2,3"
  std::string messages_jsonl;  // one chat per line, all generated together
  int64_t max_tokens = 64;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = -1;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  int64_t seed = -1;
  bool ignore_eos = false;
  bool json = false;
};
void add_generate_options(CLI::App& app, GenerateOptions& options);

// Flags of `troupe tokenize`.
struct TokenizeOptions {
  std::optional<std::string> text;
  std::string messages_json;  // a file: a messages array, or {"messages": [...], "tools": [...]}
  bool add_generation_prompt = false;
  bool no_special_tokens = false;
};
void add_tokenize_options(CLI::App& app, TokenizeOptions& options);

// "1,2,3" -> {1,2,3}; an error names the bad item.
Result<std::vector<int64_t>> parse_id_list(const std::string& text);

}  // namespace troupe::cli
