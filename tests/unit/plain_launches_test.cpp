// kernels/plain_launches.hpp: the switch is per host thread, set while a PlainLaunches lives, and
// nested guards restore what they found.
#include <gtest/gtest.h>

#include <thread>

#include "kernels/plain_launches.hpp"

namespace troupe::kernels {
namespace {

TEST(PlainLaunches, GuardsNestAndStayOnTheirThread) {
  ASSERT_FALSE(plain_launches_here());
  {
    const PlainLaunches outer;
    EXPECT_TRUE(plain_launches_here());
    bool other_thread = true;
    std::thread([&] { other_thread = plain_launches_here(); }).join();
    EXPECT_FALSE(other_thread);
    {
      const PlainLaunches inner;
      EXPECT_TRUE(plain_launches_here());
    }
    EXPECT_TRUE(plain_launches_here());  // the inner guard found it set
    {
      const PlainLaunches off(false);  // leaves it as it is
      EXPECT_TRUE(plain_launches_here());
    }
  }
  EXPECT_FALSE(plain_launches_here());
  {
    const PlainLaunches off(false);
    EXPECT_FALSE(plain_launches_here());
  }
  EXPECT_FALSE(plain_launches_here());
}

}  // namespace
}  // namespace troupe::kernels
