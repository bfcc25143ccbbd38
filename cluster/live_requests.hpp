#pragma once
// The head's ServingEngine: what the HTTP server submits to when groups of workers serve the
// model. It checks each request, keeps its callback, and hands it to the head (through `route`,
// which the actor layer wires to the head actor); the head routes it to a group and calls
// deliver() with each output, and publish() with the cluster's state.
//
//   http thread --submit--> check, remember callback --route--> head actor --> group leader
//   head actor --deliver(id, output)--> callback (erased once finished)
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "engine/serving_engine.hpp"

namespace troupe::cluster {

struct ClusterEngineHooks {
  std::function<void(GenerationRequest)> route;
  std::function<void(const std::string& request_id)> cancel;
};

class ClusterEngine final : public ServingEngine {
 public:
  ClusterEngine(int64_t vocab_size, int64_t max_model_len, ClusterEngineHooks hooks);

  Status submit(GenerationRequest request, OutputCallback on_output) override;
  void cancel(const std::string& request_id) override;
  EngineStats stats() const override;
  int64_t max_model_len() const override { return max_model_len_; }
  // True while at least one group is ready (requests submitted meanwhile wait for one, bounded).
  bool is_ready() const override { return ready_.load(); }

  // From the head's thread.
  void deliver(const std::string& request_id, const GenerationOutput& output);
  void publish(const ClusterStats& cluster, int64_t num_waiting);
  // Ends every live request with `message` (the head is stopping).
  void fail_all(const std::string& message);

 private:
  int64_t vocab_size_;
  int64_t max_model_len_;
  ClusterEngineHooks hooks_;
  std::atomic<bool> ready_{false};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, OutputCallback> live_;
  EngineStats stats_;
};

}  // namespace troupe::cluster
