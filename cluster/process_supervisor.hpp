#pragma once
// Runs a function in a forked child process and restarts it when it crashes (no actors, no
// threads in the parent). SIGTERM and SIGINT given to the parent are forwarded to the child; the
// parent then waits for the child and exits without restarting it.
//
//   fork -> child runs child_main() -> exits 0 or kPermanentExitCode: done, no restart
//                                   -> killed by a signal or other exit code: sleep(backoff), fork
#include <chrono>
#include <cstdint>
#include <functional>

#include "cluster/backoff.hpp"

namespace troupe::cluster {

// A child exiting with this code hit an error a restart cannot fix (bad config, refused join).
constexpr int kPermanentExitCode = 2;

struct SupervisorPolicy {
  BackoffPolicy backoff{std::chrono::milliseconds(200), std::chrono::milliseconds(5000), 2.0, 0.2};
  int64_t max_restarts = -1;                   // -1: unlimited
  std::chrono::milliseconds stable_after{30000};  // a child that ran this long resets the backoff
};

struct SupervisorReport {
  int exit_code = 0;         // the last child's exit code, or 128 + signal
  int64_t num_restarts = 0;  // children forked after the first
};

// Returns when the child finished for good: clean exit, permanent error, a forwarded stop signal
// or max_restarts spent. The child gets PR_SET_PDEATHSIG(SIGTERM) so it never outlives the parent.
SupervisorReport supervise_process(const std::function<int()>& child_main, const SupervisorPolicy& policy);

}  // namespace troupe::cluster
