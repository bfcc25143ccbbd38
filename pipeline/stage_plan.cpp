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

Result<std::vector<ModelStageSpec>> plan_stages(const Config& head_config, int64_t num_layers) {
  auto ranges = split_layers(num_layers, head_config.pipeline_parallel_size);
  if (!ranges.ok()) return ranges.error();
  std::vector<ModelStageSpec> specs;
  for (size_t stage = 0; stage < ranges->size(); ++stage) {
    ModelStageSpec spec;
    spec.engine = head_config.engine();
    spec.stage_index = int64_t(stage);
    spec.num_stages = int64_t(ranges->size());
    spec.layer_begin = (*ranges)[stage].begin;
    spec.layer_end = (*ranges)[stage].end;
    spec.stage_transport = head_config.stage_transport;
    specs.push_back(spec);
  }
  return specs;
}

Config stage_config(const ModelStageSpec& spec, const Config& local) {
  Config config = local;
  config.engine() = spec.engine;
  if (local.worker_gpu_memory_utilization > 0) config.gpu_memory_utilization = local.worker_gpu_memory_utilization;
  config.pipeline_parallel_size = spec.num_stages;
  config.stage_transport = spec.stage_transport;
  return config;
}

}  // namespace troupe::cluster
