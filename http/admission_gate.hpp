#pragma once
// The HTTP front door's admission and drain gate: who may start a generation, how many run, and
// the shutdown sequence of `troupe serve`. Plain state, no HTTP, tested on its own.
//
//            begin_drain()                  abort_all()
//   serving ───────────────> draining ────────────────> aborting
//   admit: ok | overloaded   admit: draining           admit: draining
//   (429 past max_waiting)   (503 + Retry-After)       live requests are cancelled
//                            live requests run on       (finish_reason "abort")
//
// NOTE: a request counts as in flight from a successful admit() until its Ticket is destroyed,
// i.e. until its response (the stream's [DONE] included) has been written. It counts as
// "admitting" from admit() until Ticket::submitted(): between the two the engine does not see it
// yet, so concurrent admits still count each other against max_waiting_requests.
//
// Thread-safety: every method may be called from any thread.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

namespace troupe::http {

enum class Admission {
  admitted,
  draining,    // shutting down: 503 with Retry-After
  overloaded,  // max_waiting_requests reached: 429 with Retry-After
};

class AdmissionGate {
 public:
  // max_waiting_requests: 0 = unbounded.
  explicit AdmissionGate(int64_t max_waiting_requests = 0) : max_waiting_(max_waiting_requests) {}
  AdmissionGate(const AdmissionGate&) = delete;
  AdmissionGate& operator=(const AdmissionGate&) = delete;

  // One admitted request; destroying it ends the request's time in flight.
  class Ticket {
   public:
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    // The engine has the request now (it counts in the engine's num_waiting from here on).
    void submitted();

   private:
    friend class AdmissionGate;
    explicit Ticket(AdmissionGate* gate) : gate_(gate) {}
    AdmissionGate* gate_;
    bool admitting_ = true;
  };

  // num_waiting: the engine's requests not yet scheduled. On admitted, `ticket` holds the request.
  Admission admit(int64_t num_waiting, std::shared_ptr<Ticket>& ticket);

  // Stops admitting; requests in flight run on.
  void begin_drain();
  // Asks every request in flight to end now (routes cancel them: finish_reason "abort").
  void abort_all();
  bool is_draining() const;
  bool is_aborting() const;
  int64_t num_in_flight() const;
  // Waits until nothing is in flight; false when `timeout` passed first.
  bool wait_until_idle(std::chrono::milliseconds timeout);

 private:
  void release(bool admitting);
  void mark_submitted();

  const int64_t max_waiting_;
  mutable std::mutex mutex_;
  std::condition_variable idle_;
  bool draining_ = false;
  bool aborting_ = false;
  int64_t num_in_flight_ = 0;
  int64_t num_admitting_ = 0;  // admitted, not yet submitted to the engine
};

}  // namespace troupe::http
