#include "cli/options.hpp"

#include <CLI/CLI.hpp>

namespace troupe::cli {

void add_common_options(CLI::App& app, Config& config) {
  // A flag given by the config file and again on the command line: the command line wins.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // Read by expand_config_file() before parsing; declared here for --help and validation.
  app.add_option("--config", config.config_file, "TOML config file; keys are the long flag names (flags override it)");
  app.add_option("--log-level", config.log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  app.add_option("--log-file", config.log_file,
                 "append logs to this file instead of stderr (a write that fails, a full disk, is told once on "
                 "stderr; serving goes on)");
}

void add_engine_options(CLI::App& app, Config& config) {
  app.add_option("--model", config.model, "Hugging Face model folder (config.json + safetensors)");
  app.add_option("--load-format", config.load_format, "auto or dummy (random weights)")->capture_default_str();
  app.add_option("--device", config.device, "auto, cpu or cuda")->capture_default_str();
  app.add_option("--dtype", config.dtype, "GPU weights: auto (bfloat16 for bf16 checkpoints), float32 or bfloat16")
      ->capture_default_str();
  app.add_option("--max-model-len", config.max_model_len, "context length (0: the model's)");
  app.add_option("--max-num-seqs", config.max_num_seqs, "sequences per engine step")->capture_default_str();
  app.add_option("--max-num-batched-tokens", config.max_num_batched_tokens, "prefill tokens per engine step")
      ->capture_default_str();
  app.add_option("--block-size", config.block_size, "tokens per KV-cache block")->capture_default_str();
  app.add_option("--num-kv-blocks", config.num_kv_blocks, "KV-cache blocks (0: sized from memory)");
  app.add_option("--gpu-memory-utilization", config.gpu_memory_utilization, "fraction of GPU memory to use")
      ->capture_default_str();
  app.add_option("--cpu-kv-cache-mb", config.cpu_kv_cache_mb, "KV-cache size on the CPU backend")
      ->capture_default_str();
  app.add_option("--kv-cache-dtype", config.kv_cache_dtype,
                 "auto (fp32 on the CPU, the weights' dtype on a GPU) or fp8 (alias fp8_e4m3: e4m3 with the "
                 "checkpoint's per-layer k_scale/v_scale, else 1; half of bf16's bytes). Llama/Qwen2/Qwen3 only: "
                 "DeepSeek's MLA cache refuses fp8 for now")
      ->capture_default_str();
  app.add_option("--all2all-backend", config.all2all_backend,
                 "DeepSeek's routed experts under -tp: allgather_reducescatter (every rank routes every token over "
                 "its experts; the partial sums join the MLP's all-reduce) or all_to_all (each rank sends its share "
                 "of the tokens to their experts' ranks and takes the results back)")
      ->capture_default_str();
  app.add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", config.enable_prefix_caching,
               "reuse the KV cache of shared prompt prefixes (on by default)");
  app.add_option("--num-threads", config.num_threads, "CPU backend threads (0: all cores)");
  app.add_flag("--enforce-eager", config.enforce_eager, "no CUDA graphs");
  app.add_flag("--async-scheduling,!--no-async-scheduling", config.async_scheduling,
               "schedule the next step while the device runs this one (off by default)");
}

void add_served_model_name_option(CLI::App& app, Config& config) {
  app.add_option("--served-model-name", config.served_model_name,
                 "name clients use as `model` (default: the model folder's name)");
}

void add_http_options(CLI::App& app, Config& config, const std::string& port_flag) {
  app.add_option("--host", config.host, "address to listen on")->capture_default_str();
  app.add_option(port_flag, config.http_port, "HTTP port")->capture_default_str();
  app.add_option("--api-key", config.api_key, "require `Authorization: Bearer KEY`; KEY1,KEY2: any one of them")
      ->envname("TROUPE_API_KEY");
  app.add_flag("--protect-metrics", config.protect_metrics, "/metrics needs the API key too (open by default)");
  app.add_option("--metrics-prefix", config.metrics_prefix, "prefix of the Prometheus names (vllm: for vLLM's)")
      ->capture_default_str();
  app.add_option("--log-format", config.log_format, "request log lines: text or json")->capture_default_str();
  app.add_flag("--log-requests-content", config.log_requests_content, "request log lines carry prompt and output");
  app.add_option("--reasoning-parser", config.reasoning_parser, "deepseek_r1: split <think> into reasoning_content");
  app.add_option("--max-body-bytes", config.max_body_bytes, "largest request body")->capture_default_str();
  add_tool_call_options(app, config);
}

void add_tool_call_options(CLI::App& app, Config& config) {
  app.add_flag("--enable-auto-tool-choice", config.enable_auto_tool_choice,
               "tool_choice \"auto\": parse the model's tool calls into tool_calls (needs --tool-call-parser)");
  app.add_option("--tool-call-parser", config.tool_call_parser,
                 "format of the model's tool calls: deepseek_v3 (V3, R1), deepseek_v31, hermes (Qwen2.5, Qwen3) or "
                 "llama3_json (Llama-3.1)");
}

void add_http_security_options(CLI::App& app, Config& config) {
  app.add_option("--ssl-keyfile", config.ssl_keyfile, "TLS private key (PEM); with --ssl-certfile the server speaks HTTPS");
  app.add_option("--ssl-certfile", config.ssl_certfile, "TLS certificate chain (PEM)");
  app.add_option("--ssl-ca-certs", config.ssl_ca_certs, "CA file (PEM): require client certificates it signed");
  app.add_option("--allowed-origins", config.allowed_origins,
                 "CORS: comma-separated origins browsers may call from, * for any (default: none)");
  app.add_option("--root-path", config.root_path, "prefix the server is mounted under behind a proxy, e.g. /llm; "
                 "routes answer with and without it");
}

void add_shutdown_option(CLI::App& app, Config& config) {
  app.add_option("--shutdown-timeout", config.shutdown_timeout_s,
                 "on SIGTERM/SIGINT, seconds in-flight requests may run before they are aborted")
      ->capture_default_str();
}

void add_lifecycle_options(CLI::App& app, Config& config) {
  add_shutdown_option(app, config);
  app.add_option("--max-waiting-requests", config.max_waiting_requests,
                 "answer 429 when this many requests wait to be scheduled (0: unbounded)")
      ->capture_default_str();
  app.add_option("--request-timeout", config.request_timeout_s, "seconds a request may run (0: no limit)")
      ->capture_default_str();
}

void add_cluster_options(CLI::App& app, Config& config) {
  app.add_option("--tensor-parallel-size,--tp", config.tensor_parallel_size, "GPUs per stage")->capture_default_str();
  app.add_option("--pipeline-parallel-size,--pp", config.pipeline_parallel_size, "stages per group")
      ->capture_default_str();
  app.add_option("--replicas", config.replicas, "groups serving the model")->capture_default_str();
  app.add_option("--stage-transport", config.stage_transport,
                 "hidden states between stages: host (UCX, staged through host memory) or nccl (GPU send/recv)")
      ->capture_default_str();
  app.add_option("--token", config.token, "shared join token")->envname("TROUPE_TOKEN");
}

// Both head and worker: all three turn on mutual TLS for the control plane.
void add_cluster_tls_options(CLI::App& app, Config& config) {
  app.add_option("--cluster-ssl-certfile", config.cluster_ssl_certfile,
                 "control-plane TLS: this node's certificate (PEM); with the key and CA, head and workers "
                 "speak mutual TLS")
      ->envname("TROUPE_CLUSTER_SSL_CERTFILE");
  app.add_option("--cluster-ssl-keyfile", config.cluster_ssl_keyfile, "control-plane TLS: this node's private key")
      ->envname("TROUPE_CLUSTER_SSL_KEYFILE");
  app.add_option("--cluster-ssl-ca-certs", config.cluster_ssl_ca_certs,
                 "control-plane TLS: the CA (PEM) that signed every node's certificate")
      ->envname("TROUPE_CLUSTER_SSL_CA_CERTS");
}

void add_heartbeat_options(CLI::App& app, Config& config) {
  app.add_option("--heartbeat-ms", config.heartbeat_ms, "heartbeat interval")
      ->envname("TROUPE_HEARTBEAT_MS")
      ->capture_default_str();
  app.add_option("--heartbeat-timeout-ms", config.heartbeat_timeout_ms,
                 "a node or head silent this long is lost (at least two heartbeats)")
      ->envname("TROUPE_HEARTBEAT_TIMEOUT_MS")
      ->capture_default_str();
}

void add_head_options(CLI::App& app, Config& config) {
  app.add_option("--port", config.cluster_port, "cluster port workers join")->capture_default_str();
  app.add_option("--request-wait-ms", config.request_wait_ms, "longest wait of a request for a ready group")
      ->envname("TROUPE_REQUEST_WAIT_MS")
      ->capture_default_str();
  app.add_option("--status-file", config.status_file, "write the membership as JSON here on every change")
      ->envname("TROUPE_CLUSTER_STATUS_FILE");
}

void add_worker_options(CLI::App& app, Config& config) {
  app.add_option("--join", config.join, "the head's HOST:PORT (default: $LWS_LEADER_ADDRESS:7400)");
  app.add_option("--token", config.token, "shared join token")->envname("TROUPE_TOKEN");
  app.add_option("--worker-index", config.worker_index, "this worker's index")->envname("LWS_WORKER_INDEX");
  app.add_option("--advertise-host", config.advertise_host,
                 "the name other workers reach this one by (default: 127.0.0.1 with a loopback head, "
                 "else the address of the interface that routes to the head)")
      ->envname("TROUPE_ADVERTISE_HOST");
  app.add_flag("!--no-supervise", config.supervise, "do not restart the worker process when it crashes");
  app.add_option("--health-port", config.worker_health_port,
                 "serve this worker's /live, /health and /metrics on --host:PORT (0: any free port; default off)")
      ->envname("TROUPE_WORKER_HEALTH_PORT");
  app.add_option("--host", config.host, "address of the --health-port endpoints")->capture_default_str();
}

void add_generate_options(CLI::App& app, GenerateOptions& o) {
  app.add_option("--prompt", o.prompt, "prompt text (needs the model's tokenizer)");
  app.add_option("--prompt-ids", o.prompt_ids, "prompt as token ids, e.g. 1,2,3");
  app.add_option("--messages-jsonl", o.messages_jsonl,
                 "a file of chats, one {\"messages\": [...]} per line: all rendered with the chat template and "
                 "generated together, one JSON line out per chat");
  app.add_option("--max-tokens", o.max_tokens, "tokens to generate")->capture_default_str();
  app.add_option("--temperature", o.temperature, "0: greedy")->capture_default_str();
  app.add_option("--top-p", o.top_p)->capture_default_str();
  app.add_option("--top-k", o.top_k, "-1: off")->capture_default_str();
  app.add_option("--min-p", o.min_p)->capture_default_str();
  app.add_option("--repetition-penalty", o.repetition_penalty)->capture_default_str();
  app.add_option("--presence-penalty", o.presence_penalty)->capture_default_str();
  app.add_option("--frequency-penalty", o.frequency_penalty)->capture_default_str();
  app.add_option("--seed", o.seed, "per-request seed (-1: random)");
  app.add_flag("--ignore-eos", o.ignore_eos, "do not stop at end-of-sequence tokens");
  app.add_flag("--json", o.json, "print one JSON object with token_ids instead of streaming text");
}

void add_tokenize_options(CLI::App& app, TokenizeOptions& o) {
  app.add_option("--text", o.text, "text to encode");
  app.add_option("--messages-json", o.messages_json, "JSON file with the chat messages to render and encode");
  app.add_flag("--add-generation-prompt", o.add_generation_prompt, "end the rendered prompt with the assistant header");
  app.add_flag("--no-special-tokens", o.no_special_tokens, "with --text: do not add BOS/EOS as the model's post-processor would");
}

Result<std::vector<int64_t>> parse_id_list(const std::string& text) {
  std::vector<int64_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (item.empty() || used != item.size() || value < 0)
      return make_error(ErrorCode::invalid_argument, "--prompt-ids: '" + item + "' is not a token id");
    ids.push_back(value);
    start = end + 1;
  }
  return ids;
}

}  // namespace troupe::cli
