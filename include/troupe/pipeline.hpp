#pragma once
// A chain of stages on stage hosts, driven from this process (the coordinator).
//
//   coordinator --tensor--> stage 0 --tensor--> stage 1 ... stage N-1 --tensor--> coordinator
//        |                    ^                    ^                 ^
//        +------ control (spawn, wire, stop; every request with a timeout) ----+
//
// create() reaches every host (HOST:PORT), asks it to start the stage's function, wires stage i's
// output to stage i+1's input and the last stage back to this process. run() sends one tensor in
// and waits for the result; runs go through the stages in order, one at a time per Pipeline.
//
// Failure model: every call is bounded by its timeout. A stage function's error comes back as
// run()'s error (naming the stage) and the pipeline stays usable. A stage host that dies or hangs
// breaks the pipeline: the running and every later run() return ErrorCode::unavailable naming the
// lost host, within the run's timeout; create a new Pipeline to continue.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/result.hpp"
#include "troupe/export.hpp"
#include "troupe/tensor.hpp"

namespace troupe::api {

struct StageSpec {
  std::string address;   // the stage host's control endpoint, "HOST:PORT"
  std::string function;  // a name registered on that host with register_stage()
};

struct PipelineOptions {
  // Bounds each setup step: reaching a host, starting a stage, connecting a tensor channel.
  std::chrono::milliseconds connect_timeout{5000};
  // The address the last stage uses to reach this process. Empty: 127.0.0.1 when every host is
  // on loopback, else this machine's host name.
  std::string callback_host;
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds heartbeat_timeout{3000};
  std::string ucx_transports = "tcp";  // see StageHostOptions::ucx_transports
};

class TROUPE_API Pipeline {
 public:
  static Result<Pipeline> create(const std::vector<StageSpec>& stages, const PipelineOptions& options = {});

  Pipeline(Pipeline&& other) noexcept;
  Pipeline& operator=(Pipeline&& other) noexcept;
  ~Pipeline();  // stops its stages on their hosts

  // Runs `input` through every stage. Thread-safe (runs are serialized).
  Result<Tensor> run(const Tensor& input, std::chrono::milliseconds timeout);

  int64_t num_stages() const;
  // Empty while usable; else why the pipeline broke.
  std::string broken_reason() const;

  struct Impl;

 private:
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace troupe::api
