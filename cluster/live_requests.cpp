#include "cluster/live_requests.hpp"

#include <algorithm>

namespace troupe::cluster {

Status LiveRequests::add(const std::string& request_id, int64_t num_prompt_tokens,
                         OutputCallback on_output) {
  std::lock_guard lock(mutex_);
  if (live_.count(request_id))
    return make_error(ErrorCode::invalid_argument, "request id '" + request_id + "' is already live");
  live_[request_id] = std::move(on_output);
  stats_.num_prompt_tokens_total += num_prompt_tokens;
  return Status::success();
}

bool LiveRequests::is_live(const std::string& request_id) const {
  std::lock_guard lock(mutex_);
  return live_.count(request_id) > 0;
}

void LiveRequests::deliver(const std::string& request_id, const GenerationOutput& output) {
  OutputCallback callback;
  {
    std::lock_guard lock(mutex_);
    auto it = live_.find(request_id);
    if (it == live_.end()) return;
    stats_.num_generation_tokens_total += int64_t(output.new_token_ids.size());
    if (output.finish_reason == FinishReason::none) {
      callback = it->second;
    } else {
      // The prefix cache as the groups saw it, counted once per request when it ends (the head
      // sees no admissions; a resumed request counts its last attempt).
      stats_.num_prefix_cache_queries_total += output.num_prompt_tokens;
      stats_.num_prefix_cache_hits_total += output.num_cached_tokens;
      callback = std::move(it->second);
      live_.erase(it);
    }
  }
  callback(output);
}

void LiveRequests::publish(const ClusterStats& cluster, int64_t num_waiting) {
  ready_.store(cluster.num_groups_ready > 0);
  std::lock_guard lock(mutex_);
  stats_.cluster = cluster;
  stats_.cluster.enabled = true;
  stats_.num_waiting = num_waiting;
  stats_.num_running = int64_t(live_.size()) - num_waiting;
  // The engines' load, summed over the groups (from their leaders' heartbeats).
  stats_.num_kv_blocks_used = 0;
  stats_.num_kv_blocks_total = 0;
  stats_.num_preemptions_total = 0;
  stats_.iteration_tokens_counts.fill(0);
  stats_.iteration_tokens_sum = 0;
  for (const GroupStats& g : cluster.groups) {
    stats_.num_kv_blocks_used += g.num_kv_blocks_used;
    stats_.num_kv_blocks_total += g.num_kv_blocks_total;
    stats_.num_preemptions_total += g.num_preemptions_total;
    // NOTE: buckets past the head's own (a worker of another version) count in +Inf.
    for (size_t i = 0; i < g.iteration_tokens_counts.size(); ++i)
      stats_.iteration_tokens_counts[std::min(i, stats_.iteration_tokens_counts.size() - 1)] += g.iteration_tokens_counts[i];
    stats_.iteration_tokens_sum += g.iteration_tokens_sum;
  }
}

void LiveRequests::fail_all(const std::string& message) {
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

EngineStats LiveRequests::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace troupe::cluster
