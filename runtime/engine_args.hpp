#pragma once
// The engine settings every stage of a group must agree on, in one struct that travels whole:
//
//   Config (is an EngineArgs) --plan_stages--> ModelStageSpec::engine --start_group (CAF, one
//   inspect overload)--> worker: stage_config() = its own Config with these fields replaced
//
// Machine-local settings (device, threads, first GPU, CUDA graphs) stay in Config: each worker
// keeps its own. Adding an engine setting: a field here, a check in validate(), its flag in
// cli/options.cpp and its name in the inspect overload in actors/messages.hpp.
#include <cstdint>
#include <string>

#include "runtime/result.hpp"

namespace troupe {

struct EngineArgs {
  std::string model;                 // Hugging Face model folder (the same path on every worker)
  std::string load_format = "auto";  // auto | dummy (random weights from config.json)
  std::string dtype = "auto";        // GPU weights: auto (bfloat16 for bf16 checkpoints) | float32 | bfloat16
  int64_t max_model_len = 0;         // 0: the model's max_position_embeddings
  int64_t max_num_seqs = 256;             // sequences in one engine step
  int64_t max_num_batched_tokens = 8192;  // prefill token budget of one step
  int64_t block_size = 16;                // tokens per KV-cache block
  int64_t num_kv_blocks = 0;              // 0: sized from memory (see gpu_memory_utilization)
  double gpu_memory_utilization = 0.9;    // fraction of GPU memory troupe may use
  int64_t cpu_kv_cache_mb = 512;          // KV-cache size on the CPU backend
  int64_t seed = 0;
  int64_t tensor_parallel_size = 1;       // devices per stage
  bool enable_prefix_caching = true;      // reuse the KV of cached prompt prefixes (full blocks)
  // auto: the backend's cache dtype (fp32 on the CPU, the weights' on a GPU); fp8 (or fp8_e4m3):
  // e4m3 with a per-tensor scale per layer for K and one for V (runtime/kv_cache.hpp), half the
  // bytes of bf16. Dense attention (Llama, Qwen2, Qwen3) only: DeepSeek's MLA cache refuses fp8.
  std::string kv_cache_dtype = "auto";

  // DeepSeek's routed experts under -tp (always expert-parallel), as vLLM's --all2all-backend:
  // allgather_reducescatter: every rank routes every token over its own experts, the partial sums
  // join the all-reduce after the MLP (an all-reduce is a reduce-scatter and an all-gather);
  // all_to_all: each rank routes its share of the tokens and sends them to their experts' ranks and
  // the results back (models/moe_dispatch.hpp).
  std::string all2all_backend = "allgather_reducescatter";

  bool fp8_kv_cache() const { return kv_cache_dtype == "fp8" || kv_cache_dtype == "fp8_e4m3"; }

  // Checks every field; the error names the flag and the bad value.
  Status validate() const;

  bool operator==(const EngineArgs&) const = default;
};

// invalid_argument naming --gpu-memory-utilization and the value unless it is in (0, 1].
Status check_gpu_memory_utilization(double value);

}  // namespace troupe
