#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/load_progress.hpp"
#include "runtime/safetensors_writer.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

struct Report {
  std::string line;
  bool final;
};

TEST(LoadProgress, ReportsEveryIntervalWithShareRateAndTimeLeftThenOneSummary) {
  double now = 100.0;
  std::vector<Report> reports;
  LoadProgress progress(
      8'000'000'000, [&](const std::string& line, bool final) { reports.push_back({line, final}); },
      [&] { return now; }, 5.0);
  now = 101.0;
  progress.add(1'000'000'000);
  EXPECT_TRUE(reports.empty()) << "no report before the interval has passed";
  now = 105.0;
  progress.add(1'000'000'000);  // 2 GB in 5 s: 0.4 GB/s, 6 GB left: 15 s
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].line, "loading weights: 2.0 / 8.0 GB (25%), 0.4 GB/s, about 15 s left");
  EXPECT_FALSE(reports[0].final);
  now = 106.0;
  progress.add(1);
  EXPECT_EQ(reports.size(), 1u) << "the next report waits a whole interval again";
  now = 120.0;
  progress.add(6'000'000'000 - 1);
  progress.finish();
  progress.finish();
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[1].line, "loading weights: 8.0 / 8.0 GB (100%), 0.4 GB/s");
  EXPECT_EQ(reports[2].line, "loaded weights: 8.0 GB in 20.0 s (0.40 GB/s)");
  EXPECT_TRUE(reports[2].final);
  progress.add(5);
  EXPECT_EQ(reports.size(), 3u) << "nothing after the summary";
  EXPECT_EQ(progress.done_bytes(), 8'000'000'005u);
}

TEST(LoadProgress, UnknownTotalShowsBytesAndRateOnly) {
  double now = 0.0;
  LoadProgress progress(0, [](const std::string&, bool) {}, [&] { return now; });
  now = 2.0;
  progress.add(3'000'000'000);
  EXPECT_EQ(progress.line(), "loading weights: 3.0 GB, 1.5 GB/s");
}

}  // namespace
}  // namespace troupe
