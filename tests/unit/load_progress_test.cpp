#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/file_prefetcher.hpp"
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

class FilePrefetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("troupe_prefetch_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write_file(const std::string& name, size_t bytes) const {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << std::string(bytes, 'x');
    return path;
  }
  fs::path dir_;
};

bool wait_for(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// Both ways of reading ahead: preads into scratch, and WILLNEED hints (load_model's).
TEST_F(FilePrefetcherTest, ReadsNoFurtherThanTheWindowAheadOfTheConsumer) {
  for (bool hint_only : {false, true}) {
  SCOPED_TRACE(hint_only ? "hint_only" : "pread");
  const std::string a = write_file("a", 1 << 20), b = write_file("b", 1 << 20);
  FilePrefetcher::Options options;
  options.hint_only = hint_only;
  options.num_threads = 4;
  options.chunk_bytes = 64 << 10;
  options.window_bytes = 256 << 10;
  // 768 KB of a (from 256 KB on) and all of b: 1,792 KB in 28 chunks.
  FilePrefetcher prefetcher({{a, 256 << 10, 1 << 20}, {b, 0, 1 << 20}}, options);
  EXPECT_EQ(prefetcher.total_bytes(), uint64_t(1792) << 10);
  ASSERT_TRUE(wait_for([&] { return prefetcher.bytes_read() == (uint64_t(256) << 10); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(prefetcher.bytes_read(), uint64_t(256) << 10) << "nothing past consumed + window";
  prefetcher.consumed(1024 << 10);
  ASSERT_TRUE(wait_for([&] { return prefetcher.bytes_read() == (uint64_t(1280) << 10); }));
  prefetcher.consumed(prefetcher.total_bytes());
  ASSERT_TRUE(wait_for([&] { return prefetcher.bytes_read() == prefetcher.total_bytes(); }));
  }
}

TEST_F(FilePrefetcherTest, AMissingFileIsSkippedAndTheDestructorJoinsEarly) {
  const std::string a = write_file("a", 100'000);
  FilePrefetcher::Options options;
  options.chunk_bytes = 4096;
  options.window_bytes = 8192;
  for (bool hint_only : {true, false}) {
    FilePrefetcher::Options hinting = options;
    hinting.hint_only = hint_only;
    FilePrefetcher prefetcher({{(dir_ / "gone").string(), 0, 50'000}, {a, 0, 100'000}}, hinting);
    prefetcher.wait_all();
    EXPECT_EQ(prefetcher.bytes_read(), 100'000u) << "the missing file's chunks read nothing; hint_only " << hint_only;
  }
  {
    FilePrefetcher prefetcher({{(dir_ / "gone").string(), 0, 50'000}, {a, 0, 100'000}}, options);
    prefetcher.wait_all();
    EXPECT_EQ(prefetcher.bytes_read(), 100'000u) << "the missing file's chunks read nothing";
  }
  FilePrefetcher waiting({{a, 0, 100'000}}, options);  // never consumed: blocked past 8 KB
  ASSERT_TRUE(wait_for([&] { return waiting.bytes_read() == 8192; }));
}  // ~FilePrefetcher returns although its threads wait for the consumer

TEST_F(FilePrefetcherTest, WeightStoreRangesCoverExactlyTheWantedTensorsMerged) {
  const std::string path = (dir_ / "model.safetensors").string();
  ASSERT_TRUE(write_safetensors(path, {make_named_tensor("model.layers.0.a", DType::f32, {4}, {1, 2, 3, 4}),
                                       make_named_tensor("model.layers.0.b", DType::f32, {2}, {1, 2}),
                                       make_named_tensor("model.layers.1.a", DType::f32, {3}, {1, 2, 3})})
                  .ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  uint64_t bytes = 0;
  auto ranges = store->ranges_of([](const std::string& name) { return name.find("layers.0.") != std::string::npos; },
                                 &bytes);
  EXPECT_EQ(bytes, 24u);
  ASSERT_EQ(ranges.size(), 1u) << "the two layer-0 tensors are neighbours";
  EXPECT_EQ(ranges[0].end - ranges[0].begin, 24u);
  EXPECT_EQ(ranges[0].path, path);
  auto all = store->ranges_of([](const std::string&) { return true; }, &bytes);
  EXPECT_EQ(bytes, 36u);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].end - all[0].begin, 36u);
}

}  // namespace
}  // namespace troupe
