#include "api/caf_runtime.hpp"

#include <mutex>

#include "api/api_messages.hpp"

namespace troupe::api::detail {

CafRuntime::CafRuntime(const CafTiming& timing) {
  config_.load<caf::io::middleman>();
  config_.add_message_types<caf::id_block::troupe_api>();
  // NOTE: BASP heartbeats are off by default in CAF 0.17; without them a hung peer keeps its
  // connection (and our requests' silence) forever.
  config_.set("middleman.heartbeat-interval", caf::timespan{timing.heartbeat_interval});
  config_.set("middleman.connection-timeout", caf::timespan{timing.heartbeat_timeout});
  config_.set("scheduler.max-threads", 2);
  config_.set("logger.console", caf::atom("none"));
  config_.set("logger.file-verbosity", caf::atom("quiet"));
  system_ = std::make_unique<caf::actor_system>(config_);
}

CafRuntime::~CafRuntime() { system_.reset(); }

std::shared_ptr<CafRuntime> CafRuntime::acquire(const CafTiming& timing) {
  static std::mutex mutex;
  static std::weak_ptr<CafRuntime> current;
  std::lock_guard lock(mutex);
  if (auto runtime = current.lock()) return runtime;
  auto runtime = std::make_shared<CafRuntime>(timing);
  current = runtime;
  return runtime;
}

Error caf_error(caf::actor_system& system, const std::string& what, const caf::error& error) {
  const ErrorCode code = error == caf::sec::request_timeout ? ErrorCode::timeout : ErrorCode::unavailable;
  return make_error(code, what + ": " + system.render(error));
}

Result<caf::actor> connect_remote(caf::actor_system& system, const std::string& host, uint16_t port,
                                  std::chrono::milliseconds timeout) {
  const std::string where = host + ":" + std::to_string(port);
  caf::scoped_actor self{system};
  Result<caf::actor> result = make_error(ErrorCode::internal, "cannot reach stage host " + where);
  self->request(system.middleman().actor_handle(), timeout, caf::connect_atom::value, host, port)
      .receive(
          [&](const caf::node_id&, caf::strong_actor_ptr& remote, const std::set<std::string>&) {
            if (remote)
              result = caf::actor_cast<caf::actor>(remote);
            else
              result = make_error(ErrorCode::unavailable, "nothing is published at stage host " + where);
          },
          [&](caf::error& error) {
            result = caf_error(system, "cannot reach stage host " + where + " within " +
                                           std::to_string(timeout.count()) + " ms",
                               error);
          });
  return result;
}

}  // namespace troupe::api::detail
