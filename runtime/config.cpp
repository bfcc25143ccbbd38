#include "runtime/config.hpp"

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

}  // namespace

Status Config::validate() const {
  if (!one_of(load_format, {"auto", "dummy"}))
    return bad("load-format", "must be auto or dummy, got '" + load_format + "'");
  if (!one_of(device, {"auto", "cpu", "cuda"}))
    return bad("device", "must be auto, cpu or cuda, got '" + device + "'");
  if (!one_of(dtype, {"auto", "float32", "bfloat16"}))
    return bad("dtype", "must be auto, float32 or bfloat16, got '" + dtype + "'");
  if (max_model_len < 0) return bad("max-model-len", "must be >= 0");
  if (max_num_seqs < 1) return bad("max-num-seqs", "must be >= 1");
  if (max_num_batched_tokens < 1) return bad("max-num-batched-tokens", "must be >= 1");
  if (block_size < 1 || block_size > 1024 || (block_size & (block_size - 1)) != 0)
    return bad("block-size", "must be a power of two in [1, 1024], got " + std::to_string(block_size));
  if (num_kv_blocks < 0) return bad("num-kv-blocks", "must be >= 0");
  if (!(gpu_memory_utilization > 0.0 && gpu_memory_utilization <= 1.0))
    return bad("gpu-memory-utilization", "must be in (0, 1]");
  if (cpu_kv_cache_mb < 1) return bad("cpu-kv-cache-mb", "must be >= 1");
  if (num_threads < 0) return bad("num-threads", "must be >= 0");
  if (!is_port(http_port)) return bad("port", "must be in [1, 65535], got " + std::to_string(http_port));
  if (!reasoning_parser.empty() && reasoning_parser != "deepseek_r1")
    return bad("reasoning-parser", "only deepseek_r1 is known, got '" + reasoning_parser + "'");
  if (max_body_bytes < 1024) return bad("max-body-bytes", "must be >= 1024");
  if (!is_port(cluster_port)) return bad("cluster-port", "must be in [1, 65535]");
  if (tensor_parallel_size < 1) return bad("tensor-parallel-size", "must be >= 1");
  if (pipeline_parallel_size < 1) return bad("pipeline-parallel-size", "must be >= 1");
  if (replicas < 1) return bad("replicas", "must be >= 1");
  if (!join.empty() && join.find(':') == std::string::npos)
    return bad("join", "expected HOST:PORT, got '" + join + "'");
  if (!log::is_valid_level(log_level))
    return bad("log-level", "must be trace, debug, info, warn, error or off, got '" + log_level + "'");
  return Status::success();
}

}  // namespace troupe
