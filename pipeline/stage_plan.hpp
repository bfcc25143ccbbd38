#pragma once
// What one pipeline stage of a group runs: the head turns its Config into one StageSpec per stage
// (model folder, engine limits, this stage's layers) and sends it with start_group; the worker
// turns it back into a Config, keeping its own machine-local settings (threads, device).
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/config.hpp"
#include "runtime/model.hpp"
#include "runtime/result.hpp"

namespace troupe::cluster {

struct StageSpec {
  std::string model;  // a folder every worker sees at the same path (a shared volume, as with LWS)
  std::string load_format = "auto";
  std::string dtype = "auto";
  int64_t max_model_len = 0;
  int64_t max_num_seqs = 256;
  int64_t max_num_batched_tokens = 8192;
  int64_t block_size = 16;
  int64_t num_kv_blocks = 0;  // 0: each stage reports what fits and the group takes the minimum
  int64_t cpu_kv_cache_mb = 512;
  double gpu_memory_utilization = 0.9;
  int64_t seed = 0;
  int64_t tensor_parallel_size = 1;  // devices this stage spans (one worker process drives them)
  int64_t stage_index = 0;
  int64_t num_stages = 1;
  int64_t layer_begin = 0;
  int64_t layer_end = -1;

  LayerRange layers() const { return LayerRange{layer_begin, layer_end}; }
  bool is_first() const { return stage_index == 0; }
  bool is_last() const { return stage_index == num_stages - 1; }
};

// Contiguous layer ranges, as even as possible; the earlier stages take one extra layer each when
// the layers do not divide evenly (the first stage also embeds, the last also runs the LM head).
// invalid_argument when there are fewer layers than stages.
Result<std::vector<LayerRange>> split_layers(int64_t num_layers, int64_t num_stages);

// One spec per stage from the head's config (model, limits) and the model's layer count.
Result<std::vector<StageSpec>> plan_stages(const Config& head_config, int64_t num_layers);

// The Config a worker runs a stage with: the spec's fields over the worker's own (`local`:
// --device, --num-threads, logging).
Config stage_config(const StageSpec& spec, const Config& local);

}  // namespace troupe::cluster
