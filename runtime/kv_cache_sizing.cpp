#include "runtime/kv_cache_sizing.hpp"

#include <string>

namespace troupe {
namespace {

Result<int64_t> kv_cache_budget_bytes(const Config& config, Backend& backend, const ModelConfig& model) {
  size_t free_bytes = 0, total_bytes = 0;
  if (!backend.memory_info(&free_bytes, &total_bytes)) return config.cpu_kv_cache_mb << 20;
  const int64_t used = int64_t(total_bytes) - int64_t(free_bytes);
  const int64_t activations = config.max_num_batched_tokens *
                                  (6 * model.hidden_size + 3 * model.intermediate_size) * int64_t(sizeof(float)) +
                              (int64_t(512) << 20);
  const int64_t budget = int64_t(config.gpu_memory_utilization * double(total_bytes)) - used - activations;
  if (budget <= 0)
    return make_error(ErrorCode::out_of_resources,
                      "--gpu-memory-utilization " + std::to_string(config.gpu_memory_utilization) +
                          " leaves no room for the KV cache after the weights (" + std::to_string(used >> 20) +
                          " MiB in use)");
  return budget;
}

}  // namespace

Result<int64_t> kv_blocks_that_fit(const Config& config, Backend& backend, const Model& model) {
  if (config.num_kv_blocks > 0) return config.num_kv_blocks;
  auto budget = kv_cache_budget_bytes(config, backend, model.config());
  if (!budget.ok()) return budget.error();
  const int64_t blocks = KvCacheSpec::blocks_for_bytes(model.kv_cache_spec(1, config.block_size), budget.value());
  if (blocks < 1)
    return make_error(ErrorCode::out_of_resources,
                      "no memory is left for even one KV-cache block (raise --cpu-kv-cache-mb or "
                      "--gpu-memory-utilization)");
  return blocks;
}

}  // namespace troupe
