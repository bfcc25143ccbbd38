#include "pipeline/model_stage.hpp"

#include <unistd.h>

#include <cstdio>
#include <future>

#include "cluster/address.hpp"
#include "pipeline/nccl_stage_transport.hpp"
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
  if (spec.uses_nccl()) {
    TROUPE_TRY(host->prepare_links());
  } else if (spec.num_stages > 1) {
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
  if (spec.uses_nccl())
    log::get("cluster")->info("stage {}/{} of group {} epoch {}: hidden states over NCCL from GPU {}",
                              spec.stage_index, spec.num_stages, spec.group_id, spec.epoch,
                              host->preparation_.device_id);
  return host;
}

Status ModelStage::prepare_links() {
  const std::string device = backend_->device_id();
  auto to_next_ops = backend_->make_stage_link_ops();
  if (!to_next_ops.ok()) return to_next_ops.error();
  auto from_prev_ops = backend_->make_stage_link_ops();
  if (!from_prev_ops.ok()) return from_prev_ops.error();
  if (device.empty())
    return make_error(ErrorCode::invalid_argument, "--stage-transport nccl: the " + backend_->name() +
                                                       " backend names no GPU (use --stage-transport host)");
  link_to_next_ = std::make_shared<NcclStageLink>(std::move(to_next_ops.value()));
  link_from_prev_ = std::make_shared<NcclStageLink>(std::move(from_prev_ops.value()));
  auto id = link_to_next_->create_id();
  if (!id.ok()) return id.error();
  preparation_.nccl_unique_id = std::move(id.value());
  char name[256] = {0};
  if (::gethostname(name, sizeof(name) - 1) != 0) std::snprintf(name, sizeof(name), "unknown-host");
  preparation_.device_id = std::string(name) + "/" + device;
  return Status::success();
}

ModelStage::~ModelStage() {
  abort("the stage is stopping");
  if (engine_) engine_->stop();
  if (runner_) runner_->stop();
}

void ModelStage::abort(const std::string& why) {
  // A link still connecting (wire() on another thread) or carrying a step returns at once.
  if (link_to_next_) link_to_next_->abort(why);
  if (link_from_prev_) link_from_prev_->abort(why);
  std::lock_guard lock(pipeline_mutex_);
  if (pipeline_) pipeline_->abort(why);
}

Status ModelStage::wire(const std::vector<std::string>& data_addresses, int64_t num_kv_blocks,
                       std::chrono::milliseconds timeout) {
  StageWiring wiring;
  wiring.data_addresses = data_addresses;
  wiring.num_kv_blocks = num_kv_blocks;
  wiring.key = StageLinkKey{spec_.group_id, spec_.epoch};
  return wire(wiring, timeout);
}

Status ModelStage::wire(const StageWiring& wiring, std::chrono::milliseconds timeout) {
  try {
    return wire_unguarded(wiring, timeout);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::internal, std::string("wiring the stage: exception: ") + e.what());
  }
}

Status ModelStage::wire_unguarded(const StageWiring& wiring, std::chrono::milliseconds timeout) {
  TROUPE_TRY(check_stage_wiring(spec_, wiring));
  const int64_t num_kv_blocks = wiring.num_kv_blocks;
  if (num_kv_blocks < 1 || num_kv_blocks > preparation_.max_kv_blocks)
    return make_error(ErrorCode::out_of_resources, "the group wants " + std::to_string(num_kv_blocks) +
                                                       " KV blocks; this stage holds at most " +
                                                       std::to_string(preparation_.max_kv_blocks));
  if (!model_) return make_error(ErrorCode::internal, "the stage was wired already");
  Transports transports;
  if (spec_.num_stages > 1) {
    auto connected = connect_transports(wiring, timeout);
    if (!connected.ok()) return connected.error();
    transports = std::move(connected.value());
  }
  return spec_.is_first() ? wire_first(std::move(transports), num_kv_blocks)
                          : wire_later(std::move(transports), num_kv_blocks);
}

Result<ModelStage::Transports> ModelStage::connect_transports(const StageWiring& wiring,
                                                             std::chrono::milliseconds timeout) {
  if (spec_.uses_nccl()) return connect_nccl(wiring, timeout);
  // Every stage connects to the next while it accepts the previous one (the first stage: the last).
  auto from_prev = std::async(std::launch::async, [&] { return listener_->accept(timeout); });
  auto to_next = connect_to(wiring.data_addresses[size_t(next_stage(spec_.stage_index, spec_.num_stages))], timeout);
  auto prev = from_prev.get();
  if (!to_next.ok()) return to_next.error();
  if (!prev.ok()) return prev.error();
  Transports transports;
  transports.to_next = std::make_unique<HostStageTransport>(std::move(to_next.value()));
  transports.from_prev = std::make_unique<HostStageTransport>(std::move(prev.value()));
  return transports;
}

Result<ModelStage::Transports> ModelStage::connect_nccl(const StageWiring& wiring, std::chrono::milliseconds timeout) {
  const int64_t me = spec_.stage_index, n = spec_.num_stages;
  const int64_t next = next_stage(me, n), prev = previous_stage(me, n);
  // Both communicators at once: the previous stage joins ours while we join the next one's.
  auto from_prev = std::async(std::launch::async, [&] {
    return link_from_prev_->connect(wiring.key, wiring.nccl_unique_ids[size_t(prev)], 2,
                                    NcclStageTransport::kReceiverRank, timeout);
  });
  Status to_next = link_to_next_->connect(wiring.key, wiring.nccl_unique_ids[size_t(me)], 2,
                                          NcclStageTransport::kSenderRank, timeout);
  if (!to_next.ok()) link_from_prev_->abort("the link to stage " + std::to_string(next) + " failed");
  Status joined = from_prev.get();
  if (!to_next.ok())
    return make_error(to_next.error().code, "NCCL link to stage " + std::to_string(next) + " (" +
                                                wiring.device_ids[size_t(next)] + "): " + to_next.error().message);
  if (!joined.ok()) {
    link_to_next_->abort("the link from stage " + std::to_string(prev) + " failed");
    return make_error(joined.error().code, "NCCL link from stage " + std::to_string(prev) + " (" +
                                               wiring.device_ids[size_t(prev)] + "): " + joined.error().message);
  }
  Transports transports;
  transports.to_next = std::make_unique<NcclStageTransport>(link_to_next_, NcclStageTransport::Role::sender,
                                                            "stage " + std::to_string(next) + " over NCCL");
  transports.from_prev = std::make_unique<NcclStageTransport>(link_from_prev_, NcclStageTransport::Role::receiver,
                                                              "stage " + std::to_string(prev) + " over NCCL");
  log::get("cluster")->info("stage {} of group {} epoch {}: NCCL links to stage {} and from stage {} ready", me,
                            wiring.key.group_id, wiring.key.epoch, next, prev);
  return transports;
}

Status ModelStage::wire_first(Transports transports, int64_t num_kv_blocks) {
  std::unique_ptr<Model> model = std::move(model_);
  if (spec_.num_stages > 1) {
    PipelineModelOptions options;
    options.max_steps_in_flight = max_steps_in_flight_ > 0 ? max_steps_in_flight_ : spec_.num_stages;
    auto pipeline = std::make_unique<PipelineModel>(std::move(model), *backend_, std::move(transports.to_next),
                                                    std::move(transports.from_prev), options);
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

Status ModelStage::wire_later(Transports transports, int64_t num_kv_blocks) {
  auto cache = backend_->create_kv_cache(model_->kv_cache_spec(num_kv_blocks, config_.block_size));
  if (!cache.ok()) return cache.error();
  // A hung next stage blocks a send at most this long; the head restarts the group meanwhile.
  runner_ = std::make_unique<StageRunner>(std::move(backend_), std::move(model_), std::move(cache.value()),
                                          std::move(transports.from_prev), std::move(transports.to_next),
                                          std::chrono::milliseconds(30000));
  runner_->set_on_failure(on_failure_);
  if (spec_.uses_nccl()) runner_->set_on_transport_failure(on_transport_failure_);
  runner_->start();
  return Status::success();
}

}  // namespace troupe::cluster
