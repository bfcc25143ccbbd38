#pragma once
// The head's front door: the ServingEngine the HTTP server submits to when groups of workers
// serve the model. It checks each request, books its callback, and messages the head; the head
// messages outputs and the cluster's state back to the front door's mailbox, a small actor that
// co-owns the book. Neither side holds a pointer to the other: only actor handles and the book.
//
//   http thread --submit--> check, book callback --route_request--> head actor --> group leader
//   http thread --cancel--> (live?) --cancel_request--> head actor
//   head actor --deliver_output{id, output}--> mailbox --> book.deliver --> callback
//   head actor --publish_cluster{stats, num_waiting}--> mailbox --> book.publish (stats, is_ready)
//
// Include only from actors/*.cpp (it names caf::actor).
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "cluster/live_requests.hpp"
#include "engine/serving_engine.hpp"

namespace troupe {

// The mailbox the head sends deliver_output and publish_cluster to; it forwards them to `book`.
caf::actor spawn_front_door_mailbox(caf::actor_system& system, std::shared_ptr<cluster::LiveRequests> book);

class HeadFrontDoor final : public ServingEngine {
 public:
  // `book`: the one the head's mailbox (spawn_front_door_mailbox) writes to.
  HeadFrontDoor(int64_t vocab_size, int64_t max_model_len, caf::actor head,
                std::shared_ptr<cluster::LiveRequests> book);

  Status submit(GenerationRequest request, OutputCallback on_output) override;
  void cancel(const std::string& request_id) override;
  EngineStats stats() const override { return book_->stats(); }
  int64_t max_model_len() const override { return max_model_len_; }
  // True while at least one group is ready (requests submitted meanwhile wait for one, bounded).
  bool is_ready() const override { return book_->is_ready(); }

  // Ends every live request with `message` (the head stopped; call once no submit can come).
  void close(const std::string& message);

 private:
  int64_t vocab_size_;
  int64_t max_model_len_;
  caf::actor head_;
  std::shared_ptr<cluster::LiveRequests> book_;
};

}  // namespace troupe
