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
  std::vector<std::string> addresses;
  int64_t num_blocks = 0;
  for (const ModelStageSpec& spec : specs.value()) {
    Config placed = config;
    placed.first_device = config.first_device + spec.stage_index * std::max<int64_t>(1, config.tensor_parallel_size);
    auto host = ModelStage::prepare(spec, placed, make_backend, "127.0.0.1", make_model);
    if (!host.ok()) return host.error();
    host.value()->set_max_steps_in_flight(max_steps_in_flight);
    addresses.push_back(host.value()->preparation().data_address);
    const int64_t fit = host.value()->preparation().max_kv_blocks;
    num_blocks = num_blocks == 0 ? fit : std::min(num_blocks, fit);
    pipeline->hosts_.push_back(std::move(host.value()));
  }
  // Every stage connects to the next while accepting the previous one: wire them all at once.
  std::vector<std::future<Status>> wired;
  for (auto& host : pipeline->hosts_)
    wired.push_back(std::async(std::launch::async, [&, h = host.get()] {
      return h->wire(addresses, num_blocks, std::chrono::milliseconds(30000));
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
  // The first stage's engine stops before the stages it feeds.
  for (auto& host : hosts_) host.reset();
}

}  // namespace troupe::cluster
