#include "pipeline/local_pipeline.hpp"

#include <algorithm>
#include <future>

#include "runtime/model_config.hpp"

namespace troupe::cluster {

Result<std::unique_ptr<LocalPipeline>> LocalPipeline::start(const Config& config, const BackendFactory& make_backend,
                                                           const ModelFactory& make_model,
                                                           int64_t max_steps_in_flight) {
  auto model = ModelConfig::load(config.model);
  if (!model.ok()) return model.error();
  auto specs = plan_stages(config, model->num_hidden_layers);
  if (!specs.ok()) return specs.error();
  std::unique_ptr<LocalPipeline> pipeline(new LocalPipeline());
  StageWiring wiring;
  wiring.key = StageLinkKey{0, 1};  // one group, one epoch: this process never restarts it
  int64_t num_blocks = 0;
  for (ModelStageSpec& spec : specs.value()) {
    spec.group_id = wiring.key.group_id;
    spec.epoch = wiring.key.epoch;
    Config placed = config;
    placed.first_device = config.first_device + spec.stage_index * std::max<int64_t>(1, config.tensor_parallel_size);
    auto host = ModelStage::prepare(spec, placed, make_backend, "127.0.0.1", make_model);
    if (!host.ok()) return host.error();
    host.value()->set_max_steps_in_flight(max_steps_in_flight);
    const StagePreparation& prepared = host.value()->preparation();
    wiring.data_addresses.push_back(prepared.data_address);
    if (spec.uses_nccl()) {
      wiring.nccl_unique_ids.push_back(prepared.nccl_unique_id);
      wiring.device_ids.push_back(prepared.device_id);
    }
    const int64_t fit = host.value()->preparation().max_kv_blocks;
    num_blocks = num_blocks == 0 ? fit : std::min(num_blocks, fit);
    pipeline->hosts_.push_back(std::move(host.value()));
    if (pipeline->hosts_.size() == 1) pipeline->first_->stage = pipeline->hosts_.front().get();
  }
  wiring.num_kv_blocks = num_blocks;
  // A later stage's NCCL link failed (only it can tell): the first stage's pipeline breaks at once,
  // as the head's group restart does in a cluster, instead of waiting out its step timeout.
  for (size_t k = 1; k < pipeline->hosts_.size(); ++k)
    pipeline->hosts_[k]->set_on_transport_failure([first = pipeline->first_, k](const std::string& why) {
      std::lock_guard lock(first->mutex);
      if (first->stage) first->stage->abort("stage " + std::to_string(k) + " failed: " + why);
    });
  // Refused before any stage connects (two stages on one GPU), so none waits for a peer that never comes.
  for (auto& host : pipeline->hosts_) TROUPE_TRY(check_stage_wiring(host->spec(), wiring));
  // Every stage connects to the next while accepting the previous one: wire them all at once.
  std::vector<std::future<Status>> wired;
  for (auto& host : pipeline->hosts_)
    wired.push_back(std::async(std::launch::async, [&, h = host.get()] {
      return h->wire(wiring, std::chrono::milliseconds(30000));
    }));
  Status failed = Status::success();
  for (auto& w : wired) {
    Status status = w.get();
    if (!status.ok() && failed.ok()) failed = status;
  }
  if (!failed.ok()) return failed.error();
  return pipeline;
}

LocalPipeline::~LocalPipeline() {
  {
    std::lock_guard lock(first_->mutex);
    first_->stage = nullptr;  // a later stage's failure no longer reaches it
  }
  // The first stage's engine stops before the stages it feeds.
  for (auto& host : hosts_) host.reset();
}

}  // namespace troupe::cluster
