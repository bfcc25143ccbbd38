#pragma once
// Every pipeline stage in this one process (`troupe serve --pipeline-parallel-size N`): the same
// ModelStages the workers of a cluster run, wired over loopback UCX (or, with --stage-transport
// nccl, over NCCL between their GPUs). Useful on one machine with
// several GPUs (stage k computes on devices k*TP .. k*TP+TP-1), and the baseline the actor cluster is measured against (same stages, no actors).
#include <memory>
#include <mutex>
#include <vector>

#include "pipeline/model_stage.hpp"
#include "runtime/config.hpp"

namespace troupe::cluster {

class LocalPipeline {
 public:
  // Loads config.model split into config.pipeline_parallel_size stages and starts the first
  // stage's engine; the group takes the smallest KV block count any stage can hold.
  // `max_steps_in_flight`: see ModelStage::set_max_steps_in_flight (0: one per stage).
  static Result<std::unique_ptr<LocalPipeline>> start(const Config& config, const BackendFactory& make_backend,
                                                      const ModelFactory& make_model = load_single_rank_model,
                                                      int64_t max_steps_in_flight = 0);
  ~LocalPipeline();

  LlmEngine& engine() { return *hosts_.front()->engine(); }
  int64_t num_stages() const { return int64_t(hosts_.size()); }

 private:
  LocalPipeline() = default;
  std::vector<std::unique_ptr<ModelStage>> hosts_;
  struct FirstStage {  // shared with the later stages' failure callbacks, which may outlive it
    std::mutex mutex;
    ModelStage* stage = nullptr;
  };
  std::shared_ptr<FirstStage> first_ = std::make_shared<FirstStage>();
};

}  // namespace troupe::cluster
