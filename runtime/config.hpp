#pragma once
// The one configuration struct of troupe. Config files (configs/*.toml) map 1:1 onto these fields
// (the key is the command-line flag's long name); the command line overrides the file, and the
// file overrides the environment variables named below.
//
// The engine section is EngineArgs (runtime/engine_args.hpp), a base rather than a member so
// `config.block_size` reads as before; it is what a head sends its workers, whole.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine_args.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct Config : EngineArgs {
  // Model and machine-local engine settings (the rest are EngineArgs').
  std::string served_model_name;  // name clients send as `model`; defaults to the folder name
  std::vector<std::string> served_model_names;  // every --served-model-name (aliases); [0] is served_model_name
  std::string device = "auto";    // auto | cpu | cuda
  int64_t num_threads = 0;        // CPU backend threads; 0: all cores
  bool enforce_eager = false;     // no CUDA graphs
  // Overlapped scheduling on one device (vLLM's --async-scheduling): the host schedules step N+1
  // and postprocesses step N-1 while step N runs. Off by default until measured on the GPU
  // (bench/overlap_host_gap_bench); a pipeline of stages keeps its own steps in flight instead.
  bool async_scheduling = false;
  // `troupe worker --gpu-memory-utilization` when given: the KV budget of this worker's stages,
  // over the head's (vLLM users set it per node); 0: the head's value.
  double worker_gpu_memory_utilization = 0;

  // HTTP front door.
  std::string host = "127.0.0.1";
  int64_t http_port = 8000;
  std::string api_key;  // also TROUPE_API_KEY; comma-separated keys, any one authorizes
  bool protect_metrics = false;  // /metrics needs the API key too (it is open by default, as vLLM's)
  std::string metrics_prefix = "troupe:";  // of every Prometheus name; "vllm:" for vLLM's dashboards
  std::string log_format = "text";         // request log lines: text | json
  bool log_requests_content = false;       // request log lines carry the prompt and the output
  std::string reasoning_parser;  // "" | deepseek_r1
  // vLLM's drop-in serve flags.
  std::string chat_template;               // --chat-template: a Jinja file or template text; "": the model's
  std::string generation_config = "auto";  // auto: the model folder's; vllm: none; else a folder
  std::string override_generation_config;  // JSON object over the generation config's sampling defaults
  int64_t default_request_seed = -1;       // --seed: requests without a seed derive one from it; -1: random
  bool disable_log_requests = false;       // no request log lines
  // Tool calls (http/tool_parser): the model's tool-call text -> OpenAI tool_calls for
  // tool_choice "auto", which needs both (vLLM's flags).
  bool enable_auto_tool_choice = false;
  std::string tool_call_parser;  // "" | deepseek_v3 | deepseek_v31 | hermes | llama3_json
  int64_t max_body_bytes = 16 << 20;
  // TLS and browsers. Key and certificate (PEM) together turn on HTTPS; a CA file also requires
  // client certificates signed by it (mutual TLS).
  std::string ssl_keyfile;
  std::string ssl_certfile;
  std::string ssl_ca_certs;
  std::string allowed_origins;  // CORS: comma-separated origins, "*" for any; "" answers no preflight
  std::string root_path;        // "/prefix" the server is mounted under behind a proxy; routes answer both
  // Lifecycle and overload (seconds may be fractional).
  double shutdown_timeout_s = 30;     // on SIGTERM/SIGINT: in-flight requests get this long, then abort
  int64_t max_waiting_requests = 0;   // engine requests waiting to be scheduled past this: 429; 0: unbounded
  double request_timeout_s = 0;       // a request running longer ends with an error; 0: none

  // Cluster.
  int64_t cluster_port = 7400;  // `troupe head --port`
  std::string join;             // `troupe worker --join HOST:PORT`, default $LWS_LEADER_ADDRESS:cluster_port
  std::string token;            // shared join token, also TROUPE_TOKEN
  // Mutual TLS on the control plane (CAF's openssl module): head and workers each present a
  // certificate signed by the CA and refuse peers without one. All three or none.
  std::string cluster_ssl_certfile;
  std::string cluster_ssl_keyfile;
  std::string cluster_ssl_ca_certs;
  int64_t pipeline_parallel_size = 1;
  // How a stage hands hidden states to the next (runtime/nccl_stage_link.hpp): "host" (the UCX
  // tensor channel, staged through host memory) or "nccl" (send/recv between the stages' GPUs).
  // host until the two are measured against each other on GPUs.
  std::string stage_transport = "host";
  int64_t replicas = 1;
  int64_t worker_index = -1;  // default $LWS_WORKER_INDEX
  int64_t first_device = 0;   // GPU of tensor-parallel rank 0 (set per stage by `serve --pp`)
  bool supervise = true;      // `troupe worker` restarts its crashed child process
  int64_t worker_health_port = -1;  // `troupe worker --health-port`: /live, /health, /metrics (-1: off, 0: any)
  int64_t heartbeat_ms = 1000;          // TROUPE_HEARTBEAT_MS: heartbeat interval, head and worker
  int64_t heartbeat_timeout_ms = 5000;  // TROUPE_HEARTBEAT_TIMEOUT_MS: silent this long = lost (>= 2 beats)
  int64_t request_wait_ms = 60000;      // TROUPE_REQUEST_WAIT_MS: a request waits this long for a ready group
  std::string status_file;     // TROUPE_CLUSTER_STATUS_FILE: the head writes its membership JSON here
  std::string advertise_host;  // TROUPE_ADVERTISE_HOST: the name other workers reach this one by
                               // ("": 127.0.0.1 when the head is on loopback, else the host name)

  std::string log_level = "info";
  std::string log_file;     // "": stderr; a write that fails there is told once on stderr
  std::string config_file;  // the --config file these values came from, if any

  const EngineArgs& engine() const { return *this; }
  EngineArgs& engine() { return *this; }

  // Checks every field (EngineArgs' first); the error names the flag and the bad value.
  Status validate() const;
};

}  // namespace troupe
