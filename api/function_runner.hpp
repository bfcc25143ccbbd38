#pragma once
// One started stage on a stage host: a thread that accepts its tensor input, connects its output
// once the coordinator says where, then applies the stage function to every tensor in order.
// No CAF here: the host actor creates runners and forwards the coordinator's wiring to them.
//
//   listening --accept--> waiting for output --connect--> serving --channel closed / stop--> done
//
// Any failure (setup timeout, a closed channel, a send that times out) ends the thread and closes
// both channels, so the next stage and finally the coordinator notice at once.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "pipeline/tensor_channel.hpp"
#include "troupe/stage.hpp"

namespace troupe::api::detail {

struct FunctionRunnerOptions {
  std::string label;       // "stage 1 'square' on HOST:PORT", prefixes errors and logs
  std::string bind_host;   // where the input listener listens
  std::chrono::milliseconds setup_timeout{5000};
  std::chrono::milliseconds io_timeout{60000};
  std::string ucx_transports;
};

class FunctionRunner {
 public:
  // Opens the input listener (an ephemeral port) and starts the thread.
  static Result<std::unique_ptr<FunctionRunner>> start(StageFunction function, FunctionRunnerOptions options);
  ~FunctionRunner();  // stop()

  uint16_t input_port() const { return input_port_; }
  // Where to send outputs; the thread connects once its input is accepted.
  void set_output(std::string host, uint16_t port);
  // Asks the thread to end and joins it (a send in progress may take up to io_timeout).
  void stop();
  bool is_done() const { return done_.load(); }

 private:
  FunctionRunner(StageFunction function, FunctionRunnerOptions options, TensorListener listener);
  void loop();
  Result<TensorChannel> accept_input();
  Result<TensorChannel> connect_output();
  Status serve(TensorChannel& input, TensorChannel& output);

  StageFunction function_;
  FunctionRunnerOptions options_;
  std::optional<TensorListener> listener_;
  uint16_t input_port_ = 0;
  std::mutex mutex_;
  std::condition_variable output_set_;
  std::optional<std::pair<std::string, uint16_t>> output_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace troupe::api::detail
