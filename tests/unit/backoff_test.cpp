#include <gtest/gtest.h>

#include "cluster/backoff.hpp"

namespace troupe::cluster {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, GrowsByTheMultiplierUpToTheCapWithoutJitter) {
  Backoff backoff(BackoffPolicy{milliseconds(100), milliseconds(1000), 2.0, 0.0}, 1);
  const int64_t expected[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (int64_t want : expected) EXPECT_EQ(backoff.next().count(), want);
  EXPECT_EQ(backoff.num_attempts(), 7);
  backoff.reset();
  EXPECT_EQ(backoff.num_attempts(), 0);
  EXPECT_EQ(backoff.next().count(), 100);
}

TEST(Backoff, JitterStaysWithinItsBandAndVaries) {
  const double jitter = 0.25;
  Backoff backoff(BackoffPolicy{milliseconds(400), milliseconds(400), 2.0, jitter}, 42);
  int64_t low = 1 << 30, high = 0;
  for (int i = 0; i < 500; ++i) {
    const int64_t delay = backoff.next().count();
    low = std::min(low, delay);
    high = std::max(high, delay);
  }
  // Band: 400 * [0.75, 1.25] = [300, 500] (+-1 for rounding).
  EXPECT_GE(low, 300 - 1);
  EXPECT_LE(high, 500 + 1);
  EXPECT_LT(low, 330) << "jitter never reached the low end";
  EXPECT_GT(high, 470) << "jitter never reached the high end";
}

TEST(Backoff, BadPoliciesAreClamped) {
  // max below initial, multiplier below 1, jitter above 1: delays stay in [0, 2 * initial].
  Backoff backoff(BackoffPolicy{milliseconds(50), milliseconds(10), 0.5, 3.0}, 7);
  for (int i = 0; i < 100; ++i) {
    const int64_t delay = backoff.next().count();
    EXPECT_GE(delay, 0);
    EXPECT_LE(delay, 100);
  }
  EXPECT_EQ(backoff.policy().max.count(), 50);
}

TEST(Backoff, SameSeedSameDelays) {
  Backoff a(BackoffPolicy{}, 9), b(BackoffPolicy{}, 9);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(a.next(), b.next());
}

}  // namespace
}  // namespace troupe::cluster
