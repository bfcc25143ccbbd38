// The stage host: a published actor that starts FunctionRunners on a coordinator's request.
#include <signal.h>

#include <cstdio>
#include <map>

#include "api/api_messages.hpp"
#include "api/caf_runtime.hpp"
#include "api/stage_registry.hpp"
#include "api/function_runner.hpp"
#include "troupe/stage.hpp"

namespace troupe::api {
namespace detail {
namespace {

struct HostState {
  StageHostOptions options;
  uint64_t next_stage_id = 1;
  std::map<uint64_t, std::unique_ptr<FunctionRunner>> stages;
  static inline const char* name = "troupe.api_stage_host";

  // Joins the threads of stages that ended (their pipeline closed or failed).
  void reap() {
    for (auto it = stages.begin(); it != stages.end();) {
      if (it->second->is_done())
        it = stages.erase(it);
      else
        ++it;
    }
  }
};

using HostActor = caf::stateful_actor<HostState>;

api_stage_spawned spawn_stage(HostState& state, const api_spawn_stage& request) {
  state.reap();
  auto function = find_stage(request.function);
  if (!function.ok()) return {false, request.label + ": " + function.error().message, 0, 0};
  FunctionRunnerOptions options;
  options.label = request.label;
  options.bind_host = state.options.bind_host;
  options.setup_timeout = std::chrono::milliseconds(std::max<int64_t>(request.setup_timeout_ms, 1));
  options.io_timeout = state.options.io_timeout;
  options.ucx_transports = state.options.ucx_transports;
  auto runner = FunctionRunner::start(std::move(*function), std::move(options));
  if (!runner.ok()) return {false, runner.error().message, 0, 0};
  const uint64_t id = state.next_stage_id++;
  const int64_t port = (*runner)->input_port();
  state.stages.emplace(id, std::move(*runner));
  return {true, "", id, port};
}

caf::behavior host_behavior(HostActor* self, StageHostOptions options) {
  self->state.options = std::move(options);
  return {
      [self](const api_spawn_stage& request) { return spawn_stage(self->state, request); },
      [self](const api_connect_output& request) -> api_reply {
        auto it = self->state.stages.find(request.stage_id);
        if (it == self->state.stages.end() || it->second->is_done())
          return {false, "stage " + std::to_string(request.stage_id) + " is not running on this host"};
        if (request.port <= 0 || request.port > 65535)
          return {false, "output port " + std::to_string(request.port) + " is out of range"};
        it->second->set_output(request.host, static_cast<uint16_t>(request.port));
        return {true, ""};
      },
      [self](const api_stop_stage& request) {
        auto it = self->state.stages.find(request.stage_id);
        if (it == self->state.stages.end()) return;
        it->second->stop();
        self->state.stages.erase(it);
      },
  };
}

}  // namespace
}  // namespace detail

struct StageHost::Impl {
  std::shared_ptr<detail::CafRuntime> runtime;
  caf::actor actor;
  uint16_t port = 0;

  ~Impl() {
    if (!actor) return;
    auto& system = runtime->system();
    (void)system.middleman().unpublish(actor, port);
    // Synchronous: the actor's state (every stage runner) is gone when this returns.
    caf::scoped_actor self{system};
    self->send_exit(actor, caf::exit_reason::user_shutdown);
    self->wait_for(actor);
    actor = nullptr;
  }
};

StageHost::StageHost(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StageHost::StageHost(StageHost&& other) noexcept = default;
StageHost& StageHost::operator=(StageHost&& other) noexcept = default;
StageHost::~StageHost() = default;
uint16_t StageHost::port() const { return impl_->port; }

Result<StageHost> StageHost::start(const StageHostOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->runtime = detail::CafRuntime::acquire({options.heartbeat_interval, options.heartbeat_timeout});
  auto& system = impl->runtime->system();
  impl->actor = system.spawn(detail::host_behavior, options);
  const char* bind = options.bind_host.empty() || options.bind_host == "0.0.0.0" ? nullptr : options.bind_host.c_str();
  auto port = system.middleman().publish(impl->actor, options.port, bind, true);
  if (!port) {
    caf::anon_send_exit(impl->actor, caf::exit_reason::user_shutdown);
    impl->actor = nullptr;
    return make_error(ErrorCode::unavailable, "stage host cannot listen on " + options.bind_host + ":" +
                                                  std::to_string(options.port) + ": " + system.render(port.error()));
  }
  impl->port = *port;
  return StageHost(std::move(impl));
}

int run_stage_host(const StageHostOptions& options) {
  // Signals go to the thread that waits for them: block them before CAF starts its threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto host = StageHost::start(options);
  if (!host.ok()) {
    std::fprintf(stderr, "troupe: error: %s\n", host.error().message.c_str());
    return 1;
  }
  std::printf("troupe stage host listening on port %u\n", static_cast<unsigned>(host->port()));
  std::fflush(stdout);
  int signal = 0;
  sigwait(&signals, &signal);
  std::fprintf(stderr, "troupe: signal %d: stage host stopping\n", signal);
  return 0;
}

}  // namespace troupe::api
