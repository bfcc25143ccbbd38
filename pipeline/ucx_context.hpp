#pragma once
// RAII owner of one UCP context and one UCP worker (tag matching), plus the helpers every UCX
// user in cluster/ needs: status conversion and a bounded wait on a UCP request.
//
// NOTE: the worker is created in UCS_THREAD_MODE_SINGLE: only one thread at a time may call into
// a UcxContext (and into anything built on its worker). One context per channel keeps channels
// independent of each other's threads.
#include <chrono>
#include <memory>
#include <string>

#include <ucp/api/ucp.h>

#include "runtime/result.hpp"

namespace troupe {

struct UcxOptions {
  // Transports, as UCX_TLS spells them ("tcp", "tcp,sysv,posix"). Empty: UCX_TLS from the
  // environment, else UCX's default choice.
  std::string transports;
  // Block on the worker's event fd when idle instead of sleeping in short steps; keeps waiting
  // stages off the CPU on oversubscribed hosts.
  bool use_wakeup = true;
};

class UcxContext {
 public:
  static Result<std::shared_ptr<UcxContext>> create(const UcxOptions& options = {});
  ~UcxContext();
  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;

  ucp_context_h context() const { return context_; }
  ucp_worker_h worker() const { return worker_; }

  // Drives the worker once; returns true when it made progress.
  bool progress() { return ucp_worker_progress(worker_) != 0; }

  // Progresses until `request` (a value returned by a *_nbx call) completes or `deadline`
  // passes. Spins while there is progress, then blocks on the worker's event fd (at most 5 ms
  // per step) so idle waits cost little CPU. Returns UCS_OK / the request's error / UCS_ERR_TIMED_OUT (request still live).
  // `should_abort` is polled between progress calls (may be null); when it returns true the
  // wait stops with UCS_ERR_CANCELED (request still live).
  using Clock = std::chrono::steady_clock;
  ucs_status_t wait(void* request, Clock::time_point deadline, bool (*should_abort)(void*) = nullptr,
                    void* abort_arg = nullptr);

  // Waits a little for worker events (event fd, else a 50 us sleep), never past `deadline`.
  // Call progress() afterwards.
  void idle(Clock::time_point deadline);

 private:
  UcxContext() = default;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int event_fd_ = -1;
};

// "<what>: <UCX status string>" as an Error; codes: timeouts -> timeout, unreachable peer,
// reset or closed connection -> unavailable, out of memory -> out_of_resources, else internal.
Error ucx_error(const std::string& what, ucs_status_t status);
ErrorCode ucx_error_code(ucs_status_t status);

}  // namespace troupe
