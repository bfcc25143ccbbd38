#include "pipeline/model_stage.hpp"

#include <future>

#include "cluster/address.hpp"
#include "engine/kv_cache_sizing.hpp"
#include "runtime/logging.hpp"
#include "models/model_loader.hpp"

namespace troupe::cluster {
namespace {

Result<TensorChannel> connect_to(const std::string& address, std::chrono::milliseconds timeout) {
  auto target = parse_host_port(address);
  if (!target.ok()) return target.error();
  return TensorChannel::connect(target->host, target->port, timeout);
}

}  // namespace

Result<std::unique_ptr<Model>> load_single_rank_model(const Config& config, Backend& backend, LayerRange range) {
  if (config.tensor_parallel_size > 1)
    return make_error(ErrorCode::unsupported, "this worker cannot run tensor-parallel stages");
  return load_model_with_format(config.model, config.load_format, backend, range);
}

Result<std::unique_ptr<ModelStage>> ModelStage::prepare(const ModelStageSpec& spec, const Config& local,
                                                      const BackendFactory& make_backend,
                                                      const std::string& advertise_host,
                                                      const ModelFactory& make_model) {
  try {
    return prepare_unguarded(spec, local, make_backend, advertise_host, make_model);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::internal, std::string("preparing the stage: exception: ") + e.what());
  }
}

Result<std::unique_ptr<ModelStage>> ModelStage::prepare_unguarded(const ModelStageSpec& spec, const Config& local,
                                                                const BackendFactory& make_backend,
                                                                const std::string& advertise_host,
                                                                const ModelFactory& make_model) {
  std::unique_ptr<ModelStage> host(new ModelStage());
  host->spec_ = spec;
  host->config_ = stage_config(spec, local);
  auto backend = make_backend(host->config_);
  if (!backend.ok()) return backend.error();
  host->backend_ = std::move(backend.value());
  auto model = make_model(host->config_, *host->backend_, spec.layers());
  if (!model.ok()) return model.error();
  host->model_ = std::move(model.value());
  auto blocks = kv_blocks_that_fit(host->config_, *host->backend_, *host->model_);
  if (!blocks.ok()) return blocks.error();
  host->preparation_.max_kv_blocks = blocks.value();
  if (spec.num_stages > 1) {
    auto listener = TensorListener::listen("0.0.0.0", 0);
    if (!listener.ok()) return listener.error();
    host->preparation_.data_address = HostPort{advertise_host, listener->port()}.to_string();
    host->listener_.emplace(std::move(listener.value()));
  }
  const LayerRange range = host->model_->layer_range();
  log::get("cluster")->info("stage {}/{} loaded layers [{}, {}) of {} on {}; {} KV blocks fit "
                            "(--gpu-memory-utilization {}, {}){}{}",
                            spec.stage_index, spec.num_stages, range.begin, range.end, spec.engine.model,
                            host->backend_->name(), blocks.value(), host->config_.gpu_memory_utilization,
                            local.worker_gpu_memory_utilization > 0 ? "this worker's" : "the head's",
                            host->preparation_.data_address.empty() ? "" : "; data at ",
                            host->preparation_.data_address);
  return host;
}

ModelStage::~ModelStage() {
  abort("the stage is stopping");
  if (engine_) engine_->stop();
  if (runner_) runner_->stop();
}

void ModelStage::abort(const std::string& why) {
  std::lock_guard lock(pipeline_mutex_);
  if (pipeline_) pipeline_->abort(why);
}

Status ModelStage::wire(const std::vector<std::string>& data_addresses, int64_t num_kv_blocks,
                       std::chrono::milliseconds timeout) {
  try {
    return wire_unguarded(data_addresses, num_kv_blocks, timeout);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::internal, std::string("wiring the stage: exception: ") + e.what());
  }
}

Status ModelStage::wire_unguarded(const std::vector<std::string>& data_addresses, int64_t num_kv_blocks,
                                 std::chrono::milliseconds timeout) {
  if (int64_t(data_addresses.size()) != spec_.num_stages)
    return make_error(ErrorCode::internal, "wiring with " + std::to_string(data_addresses.size()) +
                                               " addresses for " + std::to_string(spec_.num_stages) + " stages");
  if (num_kv_blocks < 1 || num_kv_blocks > preparation_.max_kv_blocks)
    return make_error(ErrorCode::out_of_resources, "the group wants " + std::to_string(num_kv_blocks) +
                                                       " KV blocks; this stage holds at most " +
                                                       std::to_string(preparation_.max_kv_blocks));
  if (!model_) return make_error(ErrorCode::internal, "the stage was wired already");
  return spec_.is_first() ? wire_first(data_addresses, num_kv_blocks, timeout)
                          : wire_later(data_addresses, num_kv_blocks, timeout);
}

Status ModelStage::wire_first(const std::vector<std::string>& addresses, int64_t num_kv_blocks,
                             std::chrono::milliseconds timeout) {
  std::unique_ptr<Model> model = std::move(model_);
  if (spec_.num_stages > 1) {
    // The last stage connects back to us while we connect on: accept in parallel.
    auto from_last = std::async(std::launch::async, [&] { return listener_->accept(timeout); });
    auto to_next = connect_to(addresses[1], timeout);
    auto back = from_last.get();
    if (!to_next.ok()) return to_next.error();
    if (!back.ok()) return back.error();
    PipelineModelOptions options;
    options.max_steps_in_flight = max_steps_in_flight_ > 0 ? max_steps_in_flight_ : spec_.num_stages;
    auto pipeline = std::make_unique<PipelineModel>(std::move(model), *backend_, std::move(to_next.value()),
                                                    std::move(back.value()), options);
    std::lock_guard lock(pipeline_mutex_);
    pipeline_ = pipeline.get();
    model = std::move(pipeline);
  }
  auto engine = LlmEngine::create(config_, std::move(backend_), std::move(model), num_kv_blocks);
  if (!engine.ok()) {
    std::lock_guard lock(pipeline_mutex_);
    pipeline_ = nullptr;
    return engine.error();
  }
  engine_ = std::move(engine.value());
  engine_->set_on_failure(on_failure_);
  engine_->start();
  return Status::success();
}

Status ModelStage::wire_later(const std::vector<std::string>& addresses, int64_t num_kv_blocks,
                             std::chrono::milliseconds timeout) {
  auto from_prev = std::async(std::launch::async, [&] { return listener_->accept(timeout); });
  const size_t next = size_t((spec_.stage_index + 1) % spec_.num_stages);
  auto to_next = connect_to(addresses[next], timeout);
  auto prev = from_prev.get();
  if (!to_next.ok()) return to_next.error();
  if (!prev.ok()) return prev.error();
  auto cache = backend_->create_kv_cache(model_->kv_cache_spec(num_kv_blocks, config_.block_size));
  if (!cache.ok()) return cache.error();
  // A hung next stage blocks a send at most this long; the head restarts the group meanwhile.
  runner_ = std::make_unique<StageRunner>(std::move(backend_), std::move(model_), std::move(cache.value()),
                                          std::move(prev.value()), std::move(to_next.value()),
                                          std::chrono::milliseconds(30000));
  runner_->set_on_failure(on_failure_);
  runner_->start();
  return Status::success();
}

}  // namespace troupe::cluster
