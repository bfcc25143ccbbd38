// bench/ab_switches: the --ab list the decode benchmarks take, the variable set only while a side
// runs, and the order of the sides.
#include "bench/ab_switches.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace troupe::bench {
namespace {

TEST(AbSwitches, ParsesNameValuePairsAndReportsTheRest) {
  std::string bad;
  const auto sides = parse_ab_switches("TROUPE_L2_PREFETCH=1,,oops,=2,TROUPE_MOE_GEMM_OVERLAP=serialized", &bad);
  ASSERT_EQ(sides.size(), 2u);
  EXPECT_EQ(sides[0].name, "TROUPE_L2_PREFETCH");
  EXPECT_EQ(sides[0].value, "1");
  EXPECT_EQ(sides[1].value, "serialized");
  EXPECT_EQ(sides[0].label(), "troupe_l2_prefetch_1");
  EXPECT_EQ(bad, "oops, =2");
}

TEST(AbSwitches, SetsTheVariableOnlyWhileTheSideRunsAndEndsWithTheDefault) {
  ::setenv("TROUPE_AB_TEST_B", "before", 1);
  ::unsetenv("TROUPE_AB_TEST_A");
  std::vector<std::string> seen;
  int drops = 0;
  run_ab_sides(parse_ab_switches("TROUPE_AB_TEST_A=1,TROUPE_AB_TEST_B=2"), [&] { ++drops; },
               [&](const std::string& suffix, const std::string& what) {
                 const char* a = std::getenv("TROUPE_AB_TEST_A");
                 const char* b = std::getenv("TROUPE_AB_TEST_B");
                 seen.push_back(suffix + " " + what + " " + (a ? a : "-") + " " + (b ? b : "-"));
               });
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], "_ab_troupe_ab_test_a_1 TROUPE_AB_TEST_A=1 1 before");
  EXPECT_EQ(seen[1], "_ab_troupe_ab_test_b_2 TROUPE_AB_TEST_B=2 - 2");
  EXPECT_EQ(seen[2], "_ab_baseline_again the default again, after the B sides - before");
  EXPECT_EQ(drops, 3);
  EXPECT_EQ(std::getenv("TROUPE_AB_TEST_A"), nullptr);
  EXPECT_STREQ(std::getenv("TROUPE_AB_TEST_B"), "before");
  ::unsetenv("TROUPE_AB_TEST_B");
  int calls = 0;
  run_ab_sides({}, [&] { ++calls; }, [&](const std::string&, const std::string&) { ++calls; });
  EXPECT_EQ(calls, 0);  // no sides: nothing dropped, no baseline again
}

}  // namespace
}  // namespace troupe::bench
