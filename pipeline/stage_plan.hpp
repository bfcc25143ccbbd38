#pragma once
// What one pipeline stage of a group runs: the head turns its Config into one ModelStageSpec per
// stage (its EngineArgs whole, this stage's layers) and sends it with start_group; the worker
// turns it back into a Config, keeping its own machine-local settings (threads, device).
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/config.hpp"
#include "runtime/engine_args.hpp"
#include "runtime/model.hpp"
#include "runtime/result.hpp"

namespace troupe::cluster {

struct ModelStageSpec {
  EngineArgs engine;  // the head's engine settings, whole (model folder, limits, tensor parallel size)
  int64_t stage_index = 0;
  int64_t num_stages = 1;
  int64_t layer_begin = 0;
  int64_t layer_end = -1;
  // How hidden states reach the next stage: "host" (UCX) or "nccl" (the head's --stage-transport).
  std::string stage_transport = "host";
  // The group epoch this spec runs in (the head sets them in start_group): an NCCL link's key, so
  // the wiring of another epoch is refused (pipeline/stage_wiring.hpp).
  int64_t group_id = -1;
  uint64_t epoch = 0;

  LayerRange layers() const { return LayerRange{layer_begin, layer_end}; }
  bool is_first() const { return stage_index == 0; }
  bool is_last() const { return stage_index == num_stages - 1; }
  bool uses_nccl() const { return stage_transport == "nccl" && num_stages > 1; }
  bool operator==(const ModelStageSpec&) const = default;
};

// Contiguous layer ranges, as even as possible; the earlier stages take one extra layer each when
// the layers do not divide evenly (the first stage also embeds, the last also runs the LM head).
// invalid_argument when there are fewer layers than stages.
Result<std::vector<LayerRange>> split_layers(int64_t num_layers, int64_t num_stages);

// One spec per stage from the head's config (model, limits) and the model's layer count.
Result<std::vector<ModelStageSpec>> plan_stages(const Config& head_config, int64_t num_layers);

// The Config a worker runs a stage with: the spec's EngineArgs over the worker's own (`local`:
// --device, --num-threads, logging), but the worker's own --gpu-memory-utilization where it gave
// one (Config::worker_gpu_memory_utilization): each node sizes its KV cache by its own flag.
Config stage_config(const ModelStageSpec& spec, const Config& local);

}  // namespace troupe::cluster
