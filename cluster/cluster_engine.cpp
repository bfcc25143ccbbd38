#include "cluster/cluster_engine.hpp"

#include <vector>

namespace troupe::cluster {

ClusterEngine::ClusterEngine(int64_t vocab_size, int64_t max_model_len, ClusterEngineHooks hooks)
    : vocab_size_(vocab_size), max_model_len_(max_model_len), hooks_(std::move(hooks)) {
  stats_.cluster.enabled = true;
}

Status ClusterEngine::submit(GenerationRequest request, OutputCallback on_output) {
  TROUPE_TRY(validate_generation_request(request, RequestLimits{vocab_size_, max_model_len_}));
  if (request.request_id.find('#') != std::string::npos)
    return make_error(ErrorCode::invalid_argument, "request ids may not contain '#'");
  {
    std::lock_guard lock(mutex_);
    if (live_.count(request.request_id))
      return make_error(ErrorCode::invalid_argument, "request id '" + request.request_id + "' is already live");
    live_[request.request_id] = std::move(on_output);
    stats_.num_prompt_tokens_total += int64_t(request.prompt_ids.size());
  }
  hooks_.route(std::move(request));
  return Status::success();
}

void ClusterEngine::cancel(const std::string& request_id) {
  {
    std::lock_guard lock(mutex_);
    if (!live_.count(request_id)) return;
  }
  hooks_.cancel(request_id);
}

EngineStats ClusterEngine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void ClusterEngine::deliver(const std::string& request_id, const GenerationOutput& output) {
  OutputCallback callback;
  {
    std::lock_guard lock(mutex_);
    auto it = live_.find(request_id);
    if (it == live_.end()) return;
    stats_.num_generation_tokens_total += int64_t(output.new_token_ids.size());
    if (output.finish_reason == FinishReason::none) {
      callback = it->second;
    } else {
      callback = std::move(it->second);
      live_.erase(it);
    }
  }
  callback(output);
}

void ClusterEngine::publish(const ClusterStats& cluster, int64_t num_waiting) {
  ready_.store(cluster.num_groups_ready > 0);
  std::lock_guard lock(mutex_);
  stats_.cluster = cluster;
  stats_.cluster.enabled = true;
  stats_.num_waiting = num_waiting;
  stats_.num_running = int64_t(live_.size()) - num_waiting;
}

void ClusterEngine::fail_all(const std::string& message) {
  std::unordered_map<std::string, OutputCallback> live;
  {
    std::lock_guard lock(mutex_);
    std::swap(live, live_);
  }
  for (auto& [id, callback] : live) {
    GenerationOutput out;
    out.finish_reason = FinishReason::error;
    out.error_message = message;
    callback(out);
  }
}

}  // namespace troupe::cluster
