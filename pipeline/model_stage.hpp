#pragma once
// One worker process's part of one group epoch, in two phases the head drives:
//
//   prepare(spec): load this stage's layers, open the tensor listener the previous stage (or, on
//                  the first stage, the last one) will connect to, and say how many KV blocks fit;
//                  with --stage-transport nccl instead make the NCCL unique id of the link this
//                  stage sends on and say which GPU it computes on (stage_wiring.hpp)
//   wire(wiring):  connect to the next stage, accept the previous one (nccl: join both links'
//                  communicators, nonblocking, within the timeout), allocate the KV cache; the
//                  first stage starts the engine (scheduler + sampler) over a PipelineModel, the
//                  others start a StageRunner
//
// With one stage there is no channel: the first stage is a plain engine. Destroying the host
// stops the engine or runner; abort() (thread-safe) first breaks a pipeline step in progress.
// When the stage's device fails (LlmEngine or StageRunner: a sticky fault or an exception on
// their thread), on_failure is called from that thread; the node agent then exits the worker
// process non-zero so its supervisor restarts it and the head restarts the group.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/pipeline_model.hpp"
#include "pipeline/stage_plan.hpp"
#include "pipeline/stage_runner.hpp"
#include "pipeline/stage_transport.hpp"
#include "pipeline/stage_wiring.hpp"
#include "pipeline/tensor_channel.hpp"
#include "runtime/backend.hpp"
#include "runtime/config.hpp"
#include "engine/llm_engine.hpp"

namespace troupe::cluster {

using BackendFactory = std::function<Result<std::unique_ptr<Backend>>(const Config&)>;
// Builds a stage's layers on a backend (tensor parallel ranks included); default: one rank.
using ModelFactory = std::function<Result<std::unique_ptr<Model>>(const Config&, Backend&, LayerRange)>;
Result<std::unique_ptr<Model>> load_single_rank_model(const Config& config, Backend& backend, LayerRange range);

struct StagePreparation {
  std::string data_address;  // "host:port" of this stage's listener ("" with one stage or nccl)
  int64_t max_kv_blocks = 0;  // what fits beside this stage's layers
  // --stage-transport nccl: the id of the link this stage sends on, and "<host>/<device id>".
  std::vector<uint8_t> nccl_unique_id;
  std::string device_id;
};

class ModelStage {
 public:
  // `advertise_host`: the name other workers reach this one by (the listener binds all interfaces).
  static Result<std::unique_ptr<ModelStage>> prepare(const ModelStageSpec& spec, const Config& local,
                                                   const BackendFactory& make_backend,
                                                   const std::string& advertise_host,
                                                   const ModelFactory& make_model = load_single_rank_model);
  ~ModelStage();

  const StagePreparation& preparation() const { return preparation_; }
  const ModelStageSpec& spec() const { return spec_; }

  // `data_addresses[k]`: stage k's preparation().data_address. Every stage of the group calls
  // this at about the same time; it returns once this stage's channels are up.
  Status wire(const StageWiring& wiring, std::chrono::milliseconds timeout);
  // The host transport's wiring: the addresses alone, for this stage's own group epoch.
  Status wire(const std::vector<std::string>& data_addresses, int64_t num_kv_blocks,
              std::chrono::milliseconds timeout);

  // Set before wire() on the first stage: pipeline steps of different sequences the engine keeps
  // in flight; 0 (default): one per stage; 1: one step at a time.
  void set_max_steps_in_flight(int64_t steps) { max_steps_in_flight_ = steps; }
  // Set before wire(): called at most once, from the engine's or runner's thread.
  void set_on_failure(std::function<void(const std::string& why)> on_failure) { on_failure_ = std::move(on_failure); }
  // Set before wire(): with --stage-transport nccl, called at most once from a later stage's
  // runner thread when a link failed (StageRunner::set_on_transport_failure): the group must restart.
  void set_on_transport_failure(std::function<void(const std::string& why)> on_failure) {
    on_transport_failure_ = std::move(on_failure);
  }

  // The first stage's engine once wired, else nullptr.
  LlmEngine* engine() { return engine_.get(); }
  // Thread-safe: a pipeline step in progress fails at once; the engine then ends its requests.
  void abort(const std::string& why);

 private:
  ModelStage() = default;
  // prepare and wire without the catch that turns an exception (std::bad_alloc) into an error.
  static Result<std::unique_ptr<ModelStage>> prepare_unguarded(const ModelStageSpec& spec, const Config& local,
                                                             const BackendFactory& make_backend,
                                                             const std::string& advertise_host,
                                                             const ModelFactory& make_model);
  Status prepare_links();  // nccl: both link ends and the id this stage sends with
  Status wire_unguarded(const StageWiring& wiring, std::chrono::milliseconds timeout);
  // This stage's two transports (to the next stage, from the previous one), connected.
  struct Transports {
    std::unique_ptr<StageTransport> to_next;
    std::unique_ptr<StageTransport> from_prev;
  };
  Result<Transports> connect_transports(const StageWiring& wiring, std::chrono::milliseconds timeout);
  Result<Transports> connect_nccl(const StageWiring& wiring, std::chrono::milliseconds timeout);
  Status wire_first(Transports transports, int64_t num_kv_blocks);
  Status wire_later(Transports transports, int64_t num_kv_blocks);

  ModelStageSpec spec_;
  Config config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::optional<TensorListener> listener_;
  StagePreparation preparation_;
  std::unique_ptr<LlmEngine> engine_;
  std::unique_ptr<StageRunner> runner_;
  std::mutex pipeline_mutex_;
  PipelineModel* pipeline_ = nullptr;  // owned by engine_
  std::function<void(const std::string&)> on_failure_;
  std::function<void(const std::string&)> on_transport_failure_;
  int64_t max_steps_in_flight_ = 0;
  // nccl: the link this stage sends on (rank 0) and the one it receives on (rank 1); abort() may
  // reach them from another thread while wire() connects.
  std::shared_ptr<NcclStageLink> link_to_next_;
  std::shared_ptr<NcclStageLink> link_from_prev_;
};

}  // namespace troupe::cluster
