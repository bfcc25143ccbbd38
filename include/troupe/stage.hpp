#pragma once
// Stage functions and the process that hosts them.
//
// A program registers named stage functions, then runs as a stage host: it publishes one control
// endpoint on a port and waits. A coordinator (troupe/pipeline.hpp) asks a host to start a stage
// running one of its registered functions; each started stage has its own thread, a tensor input
// and a tensor output, and applies its function to every tensor that arrives, in order.
//
//   troupe::api::register_stage("double", [](const troupe::api::Tensor& in) -> troupe::Result<troupe::api::Tensor> {
//     troupe::api::Tensor out = in;
//     for (float& v : out.data) v *= 2;
//     return out;
//   });
//   troupe::api::StageHostOptions options;
//   options.port = 7500;
//   return troupe::api::run_stage_host(options);
//
// A stage function may return an Error (or throw): the coordinator's run() then returns that
// error, prefixed with the stage that raised it; the pipeline keeps running later inputs.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/result.hpp"
#include "troupe/export.hpp"
#include "troupe/tensor.hpp"

namespace troupe::api {

using StageFunction = std::function<Result<Tensor>(const Tensor& input)>;

// Registers `function` under `name` for this process. Empty names, empty functions and names
// already taken give invalid_argument. Register before the host starts serving.
TROUPE_API Status register_stage(const std::string& name, StageFunction function);
// The names registered so far, sorted.
TROUPE_API std::vector<std::string> registered_stages();

struct StageHostOptions {
  std::string bind_host = "0.0.0.0";  // control port and the stages' tensor inputs listen here
  uint16_t port = 0;                  // control port; 0 = an ephemeral one (StageHost::port())
  // Control-connection heartbeats: a hung coordinator or host is noticed after `heartbeat_timeout`.
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds heartbeat_timeout{3000};
  // Longest wait for one tensor to be sent to the next stage (a slow consumer) before the stage
  // gives up and closes its channels.
  std::chrono::milliseconds io_timeout{60000};
  // UCX transports for the tensor channels (UCX_TLS syntax). "tcp" notices dead peers at once;
  // "" lets UCX choose (shared memory, RDMA), where a dead peer is noticed through control-
  // connection heartbeats instead.
  std::string ucx_transports = "tcp";
};

// A running stage host inside this process (tests and programs that do other work meanwhile).
class TROUPE_API StageHost {
 public:
  static Result<StageHost> start(const StageHostOptions& options = {});

  StageHost(StageHost&& other) noexcept;
  StageHost& operator=(StageHost&& other) noexcept;
  ~StageHost();  // stops every stage it runs and closes the port

  uint16_t port() const;

  struct Impl;

 private:
  explicit StageHost(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Starts a StageHost, prints `troupe stage host listening on port N` on stdout, and serves until
// SIGINT or SIGTERM. Returns the process exit code: 0, or 1 with a one-line error on stderr.
TROUPE_API int run_stage_host(const StageHostOptions& options = {});

}  // namespace troupe::api
