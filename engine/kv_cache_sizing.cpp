#include "engine/kv_cache_sizing.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "runtime/logging.hpp"

namespace troupe {
namespace {

// One forward of the largest step the scheduler may form (--max-num-batched-tokens tokens of one
// sequence) over a throwaway cache, so the device's memory pool reaches its high-water mark: what
// is in use afterwards is the weights plus the peak activations.
Status warm_up(const Config& config, Backend& backend, Model& model) {
  const ModelConfig& mc = model.config();
  int64_t n = config.max_num_batched_tokens;
  const int64_t context = config.max_model_len > 0 ? config.max_model_len : mc.max_position_embeddings;
  if (context > 1) n = std::min(n, context - 1);
  n = std::max<int64_t>(n, 1);
  const int64_t block_size = config.block_size;
  std::vector<int32_t> table(size_t((n + block_size - 1) / block_size));
  for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t(i);
  auto cache = backend.create_kv_cache(model.kv_cache_spec(int64_t(table.size()), block_size));
  if (!cache.ok()) return cache.error();
  ForwardBatch batch;
  batch.token_ids.assign(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) batch.positions.push_back(int32_t(i));
  SequenceSlice slice;
  slice.num_new_tokens = int32_t(n);
  slice.context_len = int32_t(n);
  slice.block_table = &table;
  batch.seqs.push_back(slice);
  if (!model.is_first_stage()) batch.hidden_states = Tensor::zeros(DType::f32, {n, mc.hidden_size});
  auto out = model.forward(batch, cache.value(), LogitsMode::last_token);
  if (!out.ok()) return make_error(out.error().code, "warm-up step of " + std::to_string(n) + " tokens: " +
                                                         out.error().message);
  backend.to_host(out.value());  // waits for the step to finish
  return Status::success();
}

Result<int64_t> kv_cache_budget_bytes(const Config& config, Backend& backend, Model& model) {
  size_t free_bytes = 0, total_bytes = 0;
  if (!backend.memory_info(&free_bytes, &total_bytes)) return config.cpu_kv_cache_mb << 20;
  const int64_t before = int64_t(total_bytes) - int64_t(free_bytes);
  backend.reset_memory_peak();  // from the weights now held: not a previous epoch's cache
  TROUPE_TRY(warm_up(config, backend, model));
  backend.memory_info(&free_bytes, &total_bytes);
  // This process's own peak where the backend knows it (processes sharing a GPU each get their
  // --gpu-memory-utilization share, as vLLM's instances do), else the device's whole use. Never
  // more than is free now, less a margin for what the step graphs and libraries allocate later.
  size_t held = 0, slack = 0;
  const bool own = backend.memory_held(&held, &slack);
  const int64_t used = own ? int64_t(held) : int64_t(total_bytes) - int64_t(free_bytes);
  constexpr int64_t kFreeMargin = int64_t(512) << 20;
  const int64_t budget = std::min(int64_t(config.gpu_memory_utilization * double(total_bytes)) - used,
                                  int64_t(free_bytes + slack) - kFreeMargin);
  log::get("engine")->info("warm-up step: {} MiB in use on the device before, {} MiB {} at the peak, {} MiB free; "
                           "the KV cache may take {} MiB (--gpu-memory-utilization {})",
                           before >> 20, used >> 20, own ? "held by this process" : "in use", free_bytes >> 20,
                           std::max<int64_t>(budget, 0) >> 20, config.gpu_memory_utilization);
  if (budget <= 0)
    return make_error(ErrorCode::out_of_resources,
                      "--gpu-memory-utilization " + std::to_string(config.gpu_memory_utilization) +
                          " leaves no room for the KV cache after the weights and a warm-up step (" +
                          std::to_string(used >> 20) + " MiB " + (own ? "held by this process" : "in use") + ", " +
                          std::to_string(free_bytes >> 20) + " MiB free on the device)");
  return budget;
}

}  // namespace

Result<int64_t> kv_blocks_that_fit(const Config& config, Backend& backend, Model& model) {
  if (config.num_kv_blocks > 0) return config.num_kv_blocks;
  auto budget = kv_cache_budget_bytes(config, backend, model);
  if (!budget.ok()) return budget.error();
  const KvCacheSpec shape = model.kv_cache_spec(1, config.block_size);
  const int64_t blocks = KvCacheSpec::blocks_for_bytes(shape, budget.value());
  if (blocks < 1)
    return make_error(ErrorCode::out_of_resources,
                      "no memory is left for even one KV-cache block (raise --cpu-kv-cache-mb or "
                      "--gpu-memory-utilization)");
  // The element type counts here: an fp8 cache (--kv-cache-dtype fp8) holds twice bf16's tokens.
  const int64_t bytes_per_token = shape.bytes_per_token_per_layer() * shape.num_layers;
  log::get("engine")->info("KV cache: {} ({} bytes per token over {} layers): {} blocks of {} = {} tokens fit in "
                           "{} MiB",
                           dtype_name(shape.dtype), bytes_per_token, shape.num_layers, blocks, config.block_size,
                           blocks * config.block_size, budget.value() >> 20);
  return blocks;
}

}  // namespace troupe
