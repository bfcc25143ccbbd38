#include "cluster/backoff.hpp"

#include <algorithm>

namespace troupe::cluster {

Backoff::Backoff(BackoffPolicy policy, uint64_t seed)
    : policy_(policy), current_ms_(static_cast<double>(policy.initial.count())), rng_(seed) {
  policy_.jitter = std::clamp(policy_.jitter, 0.0, 1.0);
  policy_.multiplier = std::max(policy_.multiplier, 1.0);
  if (policy_.max < policy_.initial) policy_.max = policy_.initial;
}

std::chrono::milliseconds Backoff::next() {
  const double cap = static_cast<double>(policy_.max.count());
  const double base = std::min(current_ms_, cap);
  current_ms_ = std::min(current_ms_ * policy_.multiplier, cap);
  ++num_attempts_;
  std::uniform_real_distribution<double> factor(1.0 - policy_.jitter, 1.0 + policy_.jitter);
  const double delay = policy_.jitter > 0 ? base * factor(rng_) : base;
  return std::chrono::milliseconds(static_cast<int64_t>(delay + 0.5));
}

void Backoff::reset() {
  current_ms_ = static_cast<double>(policy_.initial.count());
  num_attempts_ = 0;
}

}  // namespace troupe::cluster
