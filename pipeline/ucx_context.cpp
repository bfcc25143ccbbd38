#include "pipeline/ucx_context.hpp"

#include <poll.h>

#include <algorithm>
#include <thread>

namespace troupe {

ErrorCode ucx_error_code(ucs_status_t status) {
  switch (status) {
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_ENDPOINT_TIMEOUT:
      return ErrorCode::timeout;
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_REJECTED:
    case UCS_ERR_CANCELED:
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_SOME_CONNECTS_FAILED:
      return ErrorCode::unavailable;
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_EXCEEDS_LIMIT:
      return ErrorCode::out_of_resources;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      return ErrorCode::invalid_argument;
    case UCS_ERR_UNSUPPORTED:
      return ErrorCode::unsupported;
    default:
      return ErrorCode::internal;
  }
}

Error ucx_error(const std::string& what, ucs_status_t status) {
  return make_error(ucx_error_code(status), what + ": " + ucs_status_string(status));
}

Result<std::shared_ptr<UcxContext>> UcxContext::create(const UcxOptions& options) {
  ucp_config_t* config = nullptr;
  ucs_status_t status = ucp_config_read(nullptr, nullptr, &config);
  if (status != UCS_OK) return ucx_error("ucp_config_read", status);
  if (!options.transports.empty()) {
    status = ucp_config_modify(config, "TLS", options.transports.c_str());
    if (status != UCS_OK) {
      ucp_config_release(config);
      return ucx_error("ucp_config_modify TLS=" + options.transports, status);
    }
  }

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | (options.use_wakeup ? UCP_FEATURE_WAKEUP : 0);
  std::shared_ptr<UcxContext> self(new UcxContext());
  status = ucp_init(&params, config, &self->context_);
  ucp_config_release(config);
  if (status != UCS_OK) return ucx_error("ucp_init", status);

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  status = ucp_worker_create(self->context_, &worker_params, &self->worker_);
  if (status != UCS_OK) return ucx_error("ucp_worker_create", status);
  if (options.use_wakeup && ucp_worker_get_efd(self->worker_, &self->event_fd_) != UCS_OK) {
    self->event_fd_ = -1;  // no event support: idle() falls back to short sleeps
  }
  return self;
}

UcxContext::~UcxContext() {
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  if (context_ != nullptr) ucp_cleanup(context_);
}

void UcxContext::idle(Clock::time_point deadline) {
  const auto now = Clock::now();
  if (now >= deadline) return;
  if (event_fd_ < 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    return;
  }
  // Arm, then sleep on the worker's event fd until something arrives (or 5 ms pass, so callers
  // can poll their abort conditions). UCS_ERR_BUSY: events are already pending, go progress.
  if (ucp_worker_arm(worker_) != UCS_OK) return;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
  pollfd entry{event_fd_, POLLIN, 0};
  poll(&entry, 1, static_cast<int>(std::clamp<int64_t>(left, 1, 5)));
}

ucs_status_t UcxContext::wait(void* request, Clock::time_point deadline, bool (*should_abort)(void*),
                              void* abort_arg) {
  if (request == nullptr) return UCS_OK;
  if (UCS_PTR_IS_ERR(request)) return UCS_PTR_STATUS(request);
  // Spin while the worker makes progress (hand-offs are latency bound, bulk transfers want full
  // speed); after kSpin without progress, block on the event fd instead of burning a core.
  constexpr auto kSpin = std::chrono::microseconds(200);
  auto spin_until = Clock::now() + kSpin;
  while (true) {
    const bool moved = progress();
    const ucs_status_t status = ucp_request_check_status(request);
    if (status != UCS_INPROGRESS) return status;
    if (should_abort != nullptr && should_abort(abort_arg)) {
      // NOTE: a peer's failure may overtake messages it sent before (say, an error seen on the
      // tcp lane while a message still sits in a shared-memory queue): drain those first.
      const auto drain_until = std::min(deadline, Clock::now() + std::chrono::milliseconds(50));
      while (progress() && Clock::now() < drain_until) {
      }
      const ucs_status_t drained = ucp_request_check_status(request);
      return drained != UCS_INPROGRESS ? drained : UCS_ERR_CANCELED;
    }
    const auto now = Clock::now();
    if (now >= deadline) return UCS_ERR_TIMED_OUT;
    if (moved) {
      spin_until = now + kSpin;
    } else if (now > spin_until) {
      idle(deadline);
    } else {
      // NOTE: lets a peer that shares this core run (on an oversubscribed host a plain spin
      // holds it off for the whole spin window).
      std::this_thread::yield();
    }
  }
}

}  // namespace troupe
