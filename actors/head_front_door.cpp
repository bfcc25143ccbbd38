#include "actors/head_front_door.hpp"

#include <caf/all.hpp>

#include "actors/messages.hpp"

namespace troupe {
namespace {

struct MailboxState {
  std::shared_ptr<cluster::LiveRequests> book;
  static inline const char* name = "troupe.front_door";
};

caf::behavior mailbox_behavior(caf::stateful_actor<MailboxState>* self, std::shared_ptr<cluster::LiveRequests> book) {
  self->state.book = std::move(book);
  return {
      [self](const deliver_output& out) { self->state.book->deliver(out.request_id, out.output); },
      [self](const publish_cluster& state) { self->state.book->publish(state.cluster, state.num_waiting); },
  };
}

}  // namespace

caf::actor spawn_front_door_mailbox(caf::actor_system& system, std::shared_ptr<cluster::LiveRequests> book) {
  return system.spawn(mailbox_behavior, std::move(book));
}

HeadFrontDoor::HeadFrontDoor(int64_t vocab_size, int64_t max_model_len, caf::actor head,
                             std::shared_ptr<cluster::LiveRequests> book)
    : vocab_size_(vocab_size), max_model_len_(max_model_len), head_(std::move(head)), book_(std::move(book)) {}

Status HeadFrontDoor::submit(GenerationRequest request, OutputCallback on_output) {
  TROUPE_TRY(validate_generation_request(request, RequestLimits{vocab_size_, max_model_len_}));
  if (request.request_id.find('#') != std::string::npos)
    return make_error(ErrorCode::invalid_argument, "request ids may not contain '#'");
  TROUPE_TRY(book_->add(request.request_id, int64_t(request.prompt_ids.size()), std::move(on_output)));
  caf::anon_send(head_, route_request{std::move(request)});
  return Status::success();
}

void HeadFrontDoor::cancel(const std::string& request_id) {
  if (book_->is_live(request_id)) caf::anon_send(head_, cancel_request{request_id});
}

void HeadFrontDoor::close(const std::string& message) { book_->fail_all(message); }

}  // namespace troupe
