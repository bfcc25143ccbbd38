#pragma once
// A later pipeline stage (1 .. N-1) of one group epoch: a thread that takes each micro-batch from
// the previous stage (over a stage transport: UCX or NCCL, stage_transport.hpp), runs this stage's layers over its own paged KV cache, and sends the hidden
// states on to the next stage, or, on the last stage, the logits back to the first.
//
//   from_prev --step k--> forward(layers [b, e)) --step k (hidden) or logits k--> to_next
//
// Steps are numbered 1, 2, ... in the order the first stage sends them. Any channel or model
// error ends the loop (the group is restarted by the head); stop() ends it within ~50 ms. A
// device fault (Backend::status() after a step) or an exception on the loop (std::bad_alloc from
// a device allocation) also ends it, and calls on_failure: this process must restart.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "pipeline/stage_transport.hpp"
#include "pipeline/tensor_channel.hpp"
#include "runtime/backend.hpp"
#include "runtime/kv_cache.hpp"
#include "runtime/model.hpp"

namespace troupe::cluster {

class StageRunner {
 public:
  StageRunner(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, KvCache cache,
              std::unique_ptr<StageTransport> from_prev, std::unique_ptr<StageTransport> to_next,
              std::chrono::milliseconds send_timeout);
  // Over the UCX tensor channel (HostStageTransport).
  StageRunner(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, KvCache cache, TensorChannel from_prev,
              TensorChannel to_next, std::chrono::milliseconds send_timeout);
  ~StageRunner();  // stop()

  // Called once, on the loop thread, when the device failed; set before start().
  void set_on_failure(std::function<void(const std::string& why)> on_failure) { on_failure_ = std::move(on_failure); }
  // Called once, on the loop thread, when a transport failed (not on stop()); set before start().
  // The NCCL transport sets it: a dead link does not show at the first stage (nothing breaks its
  // wait but a timeout), so this stage reports it and the group restarts at once.
  void set_on_transport_failure(std::function<void(const std::string& why)> on_failure) {
    on_transport_failure_ = std::move(on_failure);
  }
  void start();
  void stop();
  bool is_running() const { return running_.load(); }
  std::string error() const;  // why the loop ended, "" while running or after stop()
  int64_t num_steps() const { return num_steps_.load(); }

 private:
  void loop();
  // This stage's layers over the step, then on to the next stage (*send_failed: the send failed).
  Status run_step(DecodedStep& step, bool* send_failed);
  // run_step, with exceptions and device faults as errors; *device_failed says which.
  Status run_step_guarded(DecodedStep& step, bool* device_failed, bool* send_failed);

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  KvCache cache_;
  std::unique_ptr<StageTransport> from_prev_;
  std::unique_ptr<StageTransport> to_next_;
  std::chrono::milliseconds send_timeout_;
  std::function<void(const std::string&)> on_failure_;
  std::function<void(const std::string&)> on_transport_failure_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> running_{false};
  std::atomic<int64_t> num_steps_{0};
  mutable std::mutex mutex_;
  std::string error_;
  std::thread thread_;
};

}  // namespace troupe::cluster
