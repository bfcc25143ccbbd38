#pragma once
// EngineArgs with every field away from its default, so a field left behind anywhere (a copy, an
// inspect overload) shows. Shared by the unit and the cluster message tests.
#include "runtime/engine_args.hpp"

namespace troupe {

inline EngineArgs unusual_engine_args() {
  EngineArgs args;
  args.model = "/models/deepseek";
  args.load_format = "dummy";
  args.dtype = "bfloat16";
  args.max_model_len = 4096;
  args.max_num_seqs = 7;
  args.max_num_batched_tokens = 333;
  args.block_size = 64;
  args.num_kv_blocks = 99;
  args.gpu_memory_utilization = 0.55;
  args.cpu_kv_cache_mb = 77;
  args.seed = 1234;
  args.tensor_parallel_size = 8;
  args.enable_prefix_caching = false;
  args.kv_cache_dtype = "fp8_e4m3";
  args.all2all_backend = "all_to_all";
  return args;
}

}  // namespace troupe
