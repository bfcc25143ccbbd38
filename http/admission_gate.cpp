#include "http/admission_gate.hpp"

namespace troupe::http {

AdmissionGate::Ticket::~Ticket() { gate_->release(admitting_); }

void AdmissionGate::Ticket::submitted() {
  if (!admitting_) return;
  admitting_ = false;
  gate_->mark_submitted();
}

Admission AdmissionGate::admit(int64_t num_waiting, std::shared_ptr<Ticket>& ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (draining_) return Admission::draining;
  if (max_waiting_ > 0 && num_waiting + num_admitting_ >= max_waiting_) return Admission::overloaded;
  ++num_in_flight_;
  ++num_admitting_;
  ticket.reset(new Ticket(this));
  return Admission::admitted;
}

void AdmissionGate::mark_submitted() {
  std::lock_guard<std::mutex> lock(mutex_);
  --num_admitting_;
}

void AdmissionGate::release(bool admitting) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --num_in_flight_;
    if (admitting) --num_admitting_;
  }
  idle_.notify_all();
}

void AdmissionGate::begin_drain() {
  std::lock_guard<std::mutex> lock(mutex_);
  draining_ = true;
}

void AdmissionGate::abort_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  draining_ = true;
  aborting_ = true;
}

bool AdmissionGate::is_draining() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return draining_;
}

bool AdmissionGate::is_aborting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return aborting_;
}

int64_t AdmissionGate::num_in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return num_in_flight_;
}

bool AdmissionGate::wait_until_idle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return idle_.wait_for(lock, timeout, [&] { return num_in_flight_ == 0; });
}

}  // namespace troupe::http
