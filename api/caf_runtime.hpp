#pragma once
// The one CAF actor system of a process using the API, shared by its StageHosts, Pipelines and
// Replicas and torn down with the last of them; plus the bounded control calls they make.
#include <chrono>
#include <memory>
#include <string>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "runtime/result.hpp"

namespace troupe::api::detail {

struct CafTiming {
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds heartbeat_timeout{3000};
};

class CafRuntime {
 public:
  // The process's runtime; the first caller's timing wins while it lives.
  static std::shared_ptr<CafRuntime> acquire(const CafTiming& timing);
  explicit CafRuntime(const CafTiming& timing);
  ~CafRuntime();

  caf::actor_system& system() { return *system_; }

 private:
  caf::actor_system_config config_;
  std::unique_ptr<caf::actor_system> system_;
};

// Connects to the actor published at host:port within `timeout`.
Result<caf::actor> connect_remote(caf::actor_system& system, const std::string& host, uint16_t port,
                                  std::chrono::milliseconds timeout);

// A CAF error as an Error: request timeouts -> timeout, the rest -> unavailable.
Error caf_error(caf::actor_system& system, const std::string& what, const caf::error& error);

// Sends `message` to `dest` and waits for a reply of type Reply, at most `timeout`.
template <class Reply, class Message>
Result<Reply> ask(caf::actor_system& system, const caf::actor& dest, std::chrono::milliseconds timeout,
                  Message message, const std::string& what) {
  caf::scoped_actor self{system};
  Result<Reply> result = make_error(ErrorCode::internal, what + ": no reply");
  self->request(dest, timeout, std::move(message))
      .receive([&](Reply& reply) { result = std::move(reply); },
               [&](caf::error& error) { result = caf_error(system, what, error); });
  return result;
}

}  // namespace troupe::api::detail
