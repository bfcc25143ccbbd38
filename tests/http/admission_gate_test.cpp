// AdmissionGate on its own: the 429 bound on waiting requests, the drain that refuses new work
// while requests in flight run on, and the abort that follows a shutdown timeout.
#include "http/admission_gate.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace troupe::http {
namespace {

using namespace std::chrono_literals;
using TicketPtr = std::shared_ptr<AdmissionGate::Ticket>;

TEST(AdmissionGate, UnboundedByDefault) {
  AdmissionGate gate;
  std::vector<TicketPtr> tickets(100);
  for (auto& t : tickets) EXPECT_EQ(gate.admit(1000, t), Admission::admitted);
  EXPECT_EQ(gate.num_in_flight(), 100);
  tickets.clear();
  EXPECT_EQ(gate.num_in_flight(), 0);
}

TEST(AdmissionGate, RefusesPastMaxWaitingCountingRequestsNotYetSubmitted) {
  AdmissionGate gate(2);
  TicketPtr a, b, c;
  EXPECT_EQ(gate.admit(2, a), Admission::overloaded);  // the engine already has two waiting
  EXPECT_EQ(a, nullptr);
  EXPECT_EQ(gate.admit(0, a), Admission::admitted);
  EXPECT_EQ(gate.admit(0, b), Admission::admitted);  // a is still on its way to the engine: 1 + 0 < 2
  EXPECT_EQ(gate.admit(0, c), Admission::overloaded);  // a and b, both not yet submitted
  a->submitted();
  b->submitted();
  EXPECT_EQ(gate.admit(0, c), Admission::admitted);  // both scheduled at once (engine: 0 waiting)
  c.reset();
  EXPECT_EQ(gate.admit(1, c), Admission::admitted);
  EXPECT_EQ(gate.admit(2, c), Admission::overloaded);
  EXPECT_EQ(gate.num_in_flight(), 3);
}

TEST(AdmissionGate, DrainRefusesNewWorkAndWaitsForWorkInFlight) {
  AdmissionGate gate;
  TicketPtr running;
  ASSERT_EQ(gate.admit(0, running), Admission::admitted);
  gate.begin_drain();
  EXPECT_TRUE(gate.is_draining());
  EXPECT_FALSE(gate.is_aborting());
  TicketPtr refused;
  EXPECT_EQ(gate.admit(0, refused), Admission::draining);
  EXPECT_FALSE(gate.wait_until_idle(20ms));
  std::thread finisher([&] {
    std::this_thread::sleep_for(30ms);
    running.reset();
  });
  EXPECT_TRUE(gate.wait_until_idle(5s));
  finisher.join();
  EXPECT_EQ(gate.num_in_flight(), 0);
}

TEST(AdmissionGate, AbortAllAlsoDrains) {
  AdmissionGate gate;
  EXPECT_TRUE(gate.wait_until_idle(0ms));
  gate.abort_all();
  EXPECT_TRUE(gate.is_draining());
  EXPECT_TRUE(gate.is_aborting());
  TicketPtr t;
  EXPECT_EQ(gate.admit(0, t), Admission::draining);
}

}  // namespace
}  // namespace troupe::http
