#include "cluster/request_router.hpp"

#include <algorithm>
#include <cstdlib>

namespace troupe::cluster {

void RouterActions::append(RouterActions other) {
  for (auto& g : other.broken_groups) broken_groups.push_back(g);
  for (auto& c : other.cancellations) cancellations.push_back(std::move(c));
  for (auto& d : other.dispatches) dispatches.push_back(std::move(d));
  for (auto& d : other.deliveries) deliveries.push_back(std::move(d));
}

RequestRouter::RequestRouter(RouterOptions options) : options_(options) {}

std::string RequestRouter::engine_request_id(const std::string& request_id, int64_t attempt) {
  return request_id + "#" + std::to_string(attempt);
}

int64_t RequestRouter::num_waiting() const {
  int64_t n = 0;
  for (const auto& [id, live] : requests_) n += live.group_id < 0 ? 1 : 0;
  return n;
}

int64_t RequestRouter::num_running_on(int64_t group_id) const {
  int64_t n = 0;
  for (const auto& [id, live] : requests_) n += live.group_id == group_id ? 1 : 0;
  return n;
}

void RequestRouter::finish(const std::string& request_id, GenerationOutput output, RouterActions& actions) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  output.num_prompt_tokens = int64_t(it->second.original.prompt_ids.size());
  output.num_generated_tokens = int64_t(it->second.sent_ids.size());
  actions.deliveries.push_back(Delivery{request_id, std::move(output)});
  requests_.erase(it);
}

void RequestRouter::place(const std::string& request_id, Live& live, RouterClock::time_point now,
                          RouterActions& actions) {
  const int64_t remaining = live.original.params.max_tokens - int64_t(live.sent_ids.size());
  if (remaining <= 0) {
    GenerationOutput out;
    out.finish_reason = FinishReason::length;
    return finish(request_id, std::move(out), actions);
  }
  if (live.num_attempts >= options_.max_attempts) {
    GenerationOutput out;
    out.finish_reason = FinishReason::error;
    out.error_message = "the request failed on " + std::to_string(live.num_attempts) +
                        " group(s); last: " + live.last_failure;
    return finish(request_id, std::move(out), actions);
  }
  if (ready_.empty()) {
    if (live.group_id >= 0 || live.num_attempts == 0) live.waiting_since = now;
    live.group_id = -1;
    return;
  }
  int64_t best = -1, best_load = 0;
  for (int64_t group : ready_) {
    const int64_t load = num_running_on(group);
    if (best < 0 || load < best_load) {
      best = group;
      best_load = load;
    }
  }
  live.group_id = best;
  live.attempt = ++live.num_attempts;
  Dispatch dispatch;
  dispatch.group_id = best;
  dispatch.attempt = live.attempt;
  dispatch.request.request_id = engine_request_id(request_id, live.attempt);
  dispatch.request.prompt_ids = live.original.prompt_ids;
  dispatch.request.prompt_ids.insert(dispatch.request.prompt_ids.end(), live.sent_ids.begin(), live.sent_ids.end());
  dispatch.request.params = live.original.params;
  dispatch.request.params.max_tokens = remaining;
  actions.dispatches.push_back(std::move(dispatch));
}

RouterActions RequestRouter::submit(GenerationRequest request, RouterClock::time_point now) {
  RouterActions actions;
  const std::string id = request.request_id;
  if (requests_.count(id)) {
    GenerationOutput out;
    out.finish_reason = FinishReason::error;
    out.error_message = "request id '" + id + "' is already live";
    actions.deliveries.push_back(Delivery{id, std::move(out)});
    return actions;
  }
  Live& live = requests_[id];
  live.original = std::move(request);
  live.waiting_since = now;
  place(id, live, now, actions);
  return actions;
}

void RequestRouter::resume(const std::string& request_id, const std::string& why, RouterClock::time_point now,
                           RouterActions& actions) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  Live& live = it->second;
  live.last_failure = why;
  live.group_id = -1;
  live.waiting_since = now;
  ++num_resumed_total_;
  place(request_id, live, now, actions);
}

RouterActions RequestRouter::on_output(const std::string& engine_request_id, const GenerationOutput& output,
                                       RouterClock::time_point now) {
  RouterActions actions;
  const size_t hash = engine_request_id.rfind('#');
  if (hash == std::string::npos) return actions;
  const std::string id = engine_request_id.substr(0, hash);
  const int64_t attempt = std::atoll(engine_request_id.c_str() + hash + 1);
  auto it = requests_.find(id);
  if (it == requests_.end() || it->second.group_id < 0 || it->second.attempt != attempt) return actions;  // stale
  Live& live = it->second;
  if (output.finish_reason == FinishReason::error) {
    const int64_t group = live.group_id;
    if (ready_.erase(group)) actions.broken_groups.push_back(group);
    // Every request of the broken group moves, not only this one.
    std::vector<std::string> moved;
    for (const auto& [other_id, other] : requests_)
      if (other.group_id == group) moved.push_back(other_id);
    for (const auto& other_id : moved)
      resume(other_id, "group " + std::to_string(group) + ": " + output.error_message, now, actions);
    return actions;
  }
  live.sent_ids.insert(live.sent_ids.end(), output.new_token_ids.begin(), output.new_token_ids.end());
  GenerationOutput out = output;
  out.num_prompt_tokens = int64_t(live.original.prompt_ids.size());
  out.num_generated_tokens = int64_t(live.sent_ids.size());
  if (out.finish_reason != FinishReason::none) {
    finish(id, std::move(out), actions);
  } else {
    actions.deliveries.push_back(Delivery{id, std::move(out)});
  }
  return actions;
}

RouterActions RequestRouter::cancel(const std::string& request_id) {
  RouterActions actions;
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return actions;
  if (it->second.group_id >= 0)
    actions.cancellations.push_back(
        Cancellation{it->second.group_id, engine_request_id(request_id, it->second.attempt)});
  GenerationOutput out;
  out.finish_reason = FinishReason::abort;
  finish(request_id, std::move(out), actions);
  return actions;
}

RouterActions RequestRouter::group_ready(int64_t group_id, RouterClock::time_point now) {
  RouterActions actions;
  ready_.insert(group_id);
  std::vector<std::pair<RouterClock::time_point, std::string>> waiting;
  for (const auto& [id, live] : requests_)
    if (live.group_id < 0) waiting.emplace_back(live.waiting_since, id);
  std::sort(waiting.begin(), waiting.end());
  for (const auto& [since, id] : waiting) place(id, requests_.at(id), now, actions);
  return actions;
}

RouterActions RequestRouter::group_lost(int64_t group_id, const std::string& why, RouterClock::time_point now) {
  RouterActions actions;
  ready_.erase(group_id);
  std::vector<std::string> moved;
  for (const auto& [id, live] : requests_)
    if (live.group_id == group_id) moved.push_back(id);
  for (const auto& id : moved) resume(id, "group " + std::to_string(group_id) + " lost: " + why, now, actions);
  return actions;
}

RouterActions RequestRouter::expire(RouterClock::time_point now) {
  RouterActions actions;
  std::vector<std::string> expired;
  for (const auto& [id, live] : requests_)
    if (live.group_id < 0 && now - live.waiting_since > options_.max_wait) expired.push_back(id);
  for (const auto& id : expired) {
    const Live& live = requests_.at(id);
    GenerationOutput out;
    out.finish_reason = FinishReason::error;
    out.error_message = "no serving group became ready within " + std::to_string(options_.max_wait.count()) + " ms" +
                        (live.last_failure.empty() ? std::string() : " (last failure: " + live.last_failure + ")");
    finish(id, std::move(out), actions);
  }
  return actions;
}

}  // namespace troupe::cluster
