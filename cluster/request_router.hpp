#pragma once
// The head's bookkeeping of requests across groups (no actors: the head actor holds one and
// carries out the actions it returns).
//
//   submit --(a ready group: the least loaded)--> dispatched to group g, attempt a
//          --(none ready)--> waiting, until a group is ready or max_wait passes (then an error)
//   outputs of attempt a --> the client (counts rewritten to the original prompt)
//   group g lost, or attempt a ends in "error" --> the request resumes: a new attempt on another
//          ready group (or waits) from its prompt plus every token already sent, with max_tokens
//          reduced by as many; outputs of older attempts are dropped, so nothing is sent twice
//
// Greedy requests resume token for token; sampled ones continue from what was sent (their RNG
// stream differs after the resume, and penalties count the sent tokens as prompt).
#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/serving_engine.hpp"

namespace troupe::cluster {

using RouterClock = std::chrono::steady_clock;

struct RouterOptions {
  std::chrono::milliseconds max_wait{60000};  // a request waits this long for a ready group
  int64_t max_attempts = 5;                   // dispatches per request before it fails
};

struct Dispatch {
  int64_t group_id = -1;
  int64_t attempt = 0;
  GenerationRequest request;  // request_id is "<id>#<attempt>" (unique in the group's engine)
};

struct Delivery {
  std::string request_id;
  GenerationOutput output;
};

struct Cancellation {
  int64_t group_id = -1;
  std::string engine_request_id;
};

// What the caller must do, in this order: restart, cancel, dispatch, deliver.
struct RouterActions {
  // Groups whose engine ended an attempt with an error: they are no longer ready and must be
  // restarted (the head restarts them as if a member was lost).
  std::vector<int64_t> broken_groups;
  std::vector<Cancellation> cancellations;
  std::vector<Dispatch> dispatches;
  std::vector<Delivery> deliveries;
  void append(RouterActions other);
};

class RequestRouter {
 public:
  explicit RequestRouter(RouterOptions options = {});

  RouterActions submit(GenerationRequest request, RouterClock::time_point now);
  // One output of the engine request "<id>#<attempt>" from `group_id`.
  RouterActions on_output(const std::string& engine_request_id, const GenerationOutput& output,
                          RouterClock::time_point now);
  RouterActions cancel(const std::string& request_id);
  RouterActions group_ready(int64_t group_id, RouterClock::time_point now);
  // The group's requests resume elsewhere (or wait).
  RouterActions group_lost(int64_t group_id, const std::string& why, RouterClock::time_point now);
  // Waiting requests past max_wait fail.
  RouterActions expire(RouterClock::time_point now);

  bool has_ready_group() const { return !ready_.empty(); }
  int64_t num_live() const { return int64_t(requests_.size()); }
  int64_t num_waiting() const;
  int64_t num_resumed_total() const { return num_resumed_total_; }
  int64_t num_running_on(int64_t group_id) const;

  static std::string engine_request_id(const std::string& request_id, int64_t attempt);

 private:
  struct Live {
    GenerationRequest original;
    std::vector<int32_t> sent_ids;  // every token delivered so far
    int64_t group_id = -1;          // -1: waiting
    int64_t attempt = 0;
    int64_t num_attempts = 0;
    RouterClock::time_point waiting_since;
    std::string last_failure;
  };

  // Dispatches `live` to the least loaded ready group, or parks it; may finish it at once.
  void place(const std::string& request_id, Live& live, RouterClock::time_point now, RouterActions& actions);
  void finish(const std::string& request_id, GenerationOutput output, RouterActions& actions);
  // Moves a request off its group (lost or failed attempt) and places it again.
  void resume(const std::string& request_id, const std::string& why, RouterClock::time_point now,
              RouterActions& actions);

  RouterOptions options_;
  std::map<std::string, Live> requests_;
  std::set<int64_t> ready_;
  int64_t num_resumed_total_ = 0;
};

}  // namespace troupe::cluster
