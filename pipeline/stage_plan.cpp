#include "pipeline/stage_plan.hpp"

namespace troupe::cluster {

Result<std::vector<LayerRange>> split_layers(int64_t num_layers, int64_t num_stages) {
  if (num_stages < 1) return make_error(ErrorCode::invalid_argument, "--pipeline-parallel-size must be at least 1");
  if (num_layers < num_stages)
    return make_error(ErrorCode::invalid_argument,
                      "--pipeline-parallel-size " + std::to_string(num_stages) + " exceeds the model's " +
                          std::to_string(num_layers) + " layers");
  std::vector<LayerRange> ranges;
  const int64_t base = num_layers / num_stages, extra = num_layers % num_stages;
  int64_t begin = 0;
  for (int64_t stage = 0; stage < num_stages; ++stage) {
    const int64_t count = base + (stage < extra ? 1 : 0);
    ranges.push_back(LayerRange{begin, begin + count});
    begin += count;
  }
  return ranges;
}

Result<std::vector<StageSpec>> plan_stages(const Config& head_config, int64_t num_layers) {
  auto ranges = split_layers(num_layers, head_config.pipeline_parallel_size);
  if (!ranges.ok()) return ranges.error();
  std::vector<StageSpec> specs;
  for (size_t stage = 0; stage < ranges->size(); ++stage) {
    StageSpec spec;
    spec.model = head_config.model;
    spec.load_format = head_config.load_format;
    spec.dtype = head_config.dtype;
    spec.max_model_len = head_config.max_model_len;
    spec.max_num_seqs = head_config.max_num_seqs;
    spec.max_num_batched_tokens = head_config.max_num_batched_tokens;
    spec.block_size = head_config.block_size;
    spec.num_kv_blocks = head_config.num_kv_blocks;
    spec.cpu_kv_cache_mb = head_config.cpu_kv_cache_mb;
    spec.gpu_memory_utilization = head_config.gpu_memory_utilization;
    spec.seed = head_config.seed;
    spec.tensor_parallel_size = head_config.tensor_parallel_size;
    spec.stage_index = int64_t(stage);
    spec.num_stages = int64_t(ranges->size());
    spec.layer_begin = (*ranges)[stage].begin;
    spec.layer_end = (*ranges)[stage].end;
    specs.push_back(spec);
  }
  return specs;
}

Config stage_config(const StageSpec& spec, const Config& local) {
  Config config = local;
  config.model = spec.model;
  config.load_format = spec.load_format;
  config.dtype = spec.dtype;
  config.max_model_len = spec.max_model_len;
  config.max_num_seqs = spec.max_num_seqs;
  config.max_num_batched_tokens = spec.max_num_batched_tokens;
  config.block_size = spec.block_size;
  config.num_kv_blocks = spec.num_kv_blocks;
  config.cpu_kv_cache_mb = spec.cpu_kv_cache_mb;
  config.gpu_memory_utilization = spec.gpu_memory_utilization;
  config.seed = spec.seed;
  config.tensor_parallel_size = spec.tensor_parallel_size;
  config.pipeline_parallel_size = spec.num_stages;
  return config;
}

}  // namespace troupe::cluster
