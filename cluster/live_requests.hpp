#pragma once
// The head front door's book: the live requests' output callbacks and the engine stats the HTTP
// server reads. Thread-safe: HTTP threads add requests and read stats; the front door's mailbox
// actor (actors/head_front_door) delivers outputs and publishes the cluster's state. No CAF here.
//
//   add(id, callback) --deliver(id, output)*--> callback(output) ... finish_reason set: erased
//   fail_all(message): every live callback gets one error output (the head stopped)
#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>

#include "engine/serving_engine.hpp"

namespace troupe::cluster {

class LiveRequests {
 public:
  LiveRequests() { stats_.cluster.enabled = true; }

  // invalid_argument when `request_id` is already live.
  Status add(const std::string& request_id, int64_t num_prompt_tokens, OutputCallback on_output);
  bool is_live(const std::string& request_id) const;
  // Calls the request's callback (outside the lock); unknown ids are ignored.
  void deliver(const std::string& request_id, const GenerationOutput& output);
  void publish(const ClusterStats& cluster, int64_t num_waiting);
  void fail_all(const std::string& message);

  EngineStats stats() const;
  // True while at least one group is ready.
  bool is_ready() const { return ready_.load(); }

 private:
  std::atomic<bool> ready_{false};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, OutputCallback> live_;
  EngineStats stats_;
};

}  // namespace troupe::cluster
