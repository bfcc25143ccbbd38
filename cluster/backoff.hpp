#pragma once
// Exponential backoff with a cap and jitter, for reconnects and process restarts.
#include <chrono>
#include <cstdint>
#include <random>

namespace troupe::cluster {

struct BackoffPolicy {
  std::chrono::milliseconds initial{250};
  std::chrono::milliseconds max{5000};
  double multiplier = 2.0;
  double jitter = 0.2;  // each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {}, uint64_t seed = std::random_device{}());

  // The delay before the next attempt; grows by `multiplier` each call up to `max` (before jitter).
  std::chrono::milliseconds next();
  // Back to `initial` (after a success).
  void reset();
  int64_t num_attempts() const { return num_attempts_; }
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  double current_ms_;
  int64_t num_attempts_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace troupe::cluster
