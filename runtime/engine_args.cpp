#include "runtime/engine_args.hpp"

#include <charconv>

namespace troupe {
namespace {

Status bad(const std::string& flag, const std::string& why) {
  return make_error(ErrorCode::invalid_argument, "--" + flag + ": " + why);
}

// The shortest text that reads back as v (1.5, not 1.500000).
std::string shortest_number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::string("NaN");
}

}  // namespace

Status check_gpu_memory_utilization(double value) {
  if (value > 0.0 && value <= 1.0) return Status::success();
  return bad("gpu-memory-utilization", "must be in (0, 1], a fraction of the GPU's memory, got " + shortest_number(value));
}

Status EngineArgs::validate() const {
  if (load_format != "auto" && load_format != "dummy")
    return bad("load-format", "must be auto or dummy, got '" + load_format + "'");
  if (dtype != "auto" && dtype != "float32" && dtype != "bfloat16")
    return bad("dtype", "must be auto, float32 or bfloat16, got '" + dtype + "'");
  if (max_model_len < 0) return bad("max-model-len", "must be >= 0");
  if (max_num_seqs < 1) return bad("max-num-seqs", "must be >= 1");
  if (max_num_batched_tokens < 1) return bad("max-num-batched-tokens", "must be >= 1");
  if (block_size < 1 || block_size > 1024 || (block_size & (block_size - 1)) != 0)
    return bad("block-size", "must be a power of two in [1, 1024], got " + std::to_string(block_size));
  if (num_kv_blocks < 0) return bad("num-kv-blocks", "must be >= 0");
  TROUPE_TRY(check_gpu_memory_utilization(gpu_memory_utilization));
  if (cpu_kv_cache_mb < 1) return bad("cpu-kv-cache-mb", "must be >= 1");
  if (tensor_parallel_size < 1) return bad("tensor-parallel-size", "must be >= 1");
  if (kv_cache_dtype != "auto" && !fp8_kv_cache())
    return bad("kv-cache-dtype", "must be auto, fp8 or fp8_e4m3, got '" + kv_cache_dtype + "'");
  if (all2all_backend != "allgather_reducescatter" && all2all_backend != "all_to_all")
    return bad("all2all-backend", "must be allgather_reducescatter or all_to_all, got '" + all2all_backend +
                                      "' (vLLM's pplx, deepep_* and naive kernels are not built)");
  return Status::success();
}

}  // namespace troupe
