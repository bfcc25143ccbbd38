#include "runtime/config.hpp"

#include <algorithm>

#include "runtime/logging.hpp"

namespace troupe {
namespace {

Status bad(const std::string& field, const std::string& why) {
  return make_error(ErrorCode::invalid_argument, "--" + field + ": " + why);
}

bool one_of(const std::string& value, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (value == a) return true;
  return false;
}

bool is_port(int64_t port) { return port > 0 && port < 65536; }

// A Prometheus metric name's start: [a-zA-Z_:][a-zA-Z0-9_:]*, or nothing.
bool is_metrics_prefix(const std::string& prefix) {
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = prefix[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Status Config::validate() const {
  TROUPE_TRY(EngineArgs::validate());
  if (worker_gpu_memory_utilization != 0) TROUPE_TRY(check_gpu_memory_utilization(worker_gpu_memory_utilization));
  if (!one_of(device, {"auto", "cpu", "cuda"}))
    return bad("device", "must be auto, cpu or cuda, got '" + device + "'");
  if (num_threads < 0) return bad("num-threads", "must be >= 0");
  if (!is_port(http_port)) return bad("port", "must be in [1, 65535], got " + std::to_string(http_port));
  if (!reasoning_parser.empty() && reasoning_parser != "deepseek_r1")
    return bad("reasoning-parser", "only deepseek_r1 is known, got '" + reasoning_parser + "'");
  if (!tool_call_parser.empty() &&
      !one_of(tool_call_parser, {"deepseek_v3", "deepseek_v31", "hermes", "llama3_json"}))
    return bad("tool-call-parser", "must be one of deepseek_v3, deepseek_v31, hermes, llama3_json, got '" +
                                       tool_call_parser + "'");
  if (enable_auto_tool_choice && tool_call_parser.empty())
    return bad("enable-auto-tool-choice", "needs --tool-call-parser (deepseek_v3, deepseek_v31, hermes or llama3_json)");
  if (!api_key.empty()) {
    for (size_t at = 0; at <= api_key.size();) {
      size_t end = std::min(api_key.find(',', at), api_key.size());
      if (end == at) return bad("api-key", "has an empty key in its comma-separated list");
      at = end + 1;
    }
  }
  if (!is_metrics_prefix(metrics_prefix))
    return bad("metrics-prefix", "must match [a-zA-Z_:][a-zA-Z0-9_:]* or be empty, got '" + metrics_prefix + "'");
  if (!one_of(log_format, {"text", "json"})) return bad("log-format", "must be text or json, got '" + log_format + "'");
  if (ssl_keyfile.empty() != ssl_certfile.empty())
    return bad(ssl_keyfile.empty() ? "ssl-keyfile" : "ssl-certfile", "--ssl-keyfile and --ssl-certfile go together");
  if (!ssl_ca_certs.empty() && ssl_certfile.empty())
    return bad("ssl-ca-certs", "needs --ssl-keyfile and --ssl-certfile (client certificates need TLS)");
  if (!root_path.empty() && (root_path[0] != '/' || root_path.back() == '/' ||
                             root_path.find_first_of(" ?#\\\"") != std::string::npos))
    return bad("root-path", "must start with '/', not end with '/' and hold no spaces, '?' or '#', got '" + root_path + "'");
  if (max_body_bytes < 1024) return bad("max-body-bytes", "must be >= 1024");
  if (!(shutdown_timeout_s >= 0)) return bad("shutdown-timeout", "must be >= 0 seconds");
  if (max_waiting_requests < 0) return bad("max-waiting-requests", "must be >= 0 (0: unbounded)");
  if (!(request_timeout_s >= 0)) return bad("request-timeout", "must be >= 0 seconds (0: none)");
  if (!is_port(cluster_port)) return bad("cluster-port", "must be in [1, 65535]");
  if (pipeline_parallel_size < 1) return bad("pipeline-parallel-size", "must be >= 1");
  if (!one_of(stage_transport, {"host", "nccl"}))
    return bad("stage-transport", "must be host or nccl, got '" + stage_transport + "'");
  if (stage_transport == "nccl" && device == "cpu") return bad("stage-transport", "nccl needs GPUs (--device cpu given)");
  if (replicas < 1) return bad("replicas", "must be >= 1");
  if (!join.empty() && join.find(':') == std::string::npos)
    return bad("join", "expected HOST:PORT, got '" + join + "'");
  if (heartbeat_ms < 1) return bad("heartbeat-ms", "must be >= 1");
  if (heartbeat_timeout_ms < 1) return bad("heartbeat-timeout-ms", "must be >= 1");
  if (request_wait_ms < 1) return bad("request-wait-ms", "must be >= 1");
  if (!log::is_valid_level(log_level))
    return bad("log-level", "must be trace, debug, info, warn, error or off, got '" + log_level + "'");
  return Status::success();
}

}  // namespace troupe
