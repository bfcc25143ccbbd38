// ReadAhead: items come back with their files' bytes in any take order, memory stays within the
// budget, read errors reach take() naming tensor and file, and cancelling joins the readers.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/host_ring.hpp"
#include "runtime/read_ahead.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

class ReadAheadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("troupe_read_ahead_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A file of `n` bytes, byte i = (i * 7 + seed) % 251: every offset distinguishable.
  std::string write_file(const std::string& name, size_t n, int seed) {
    std::vector<char> bytes(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = char((i * 7 + size_t(seed)) % 251);
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(n));
    return path;
  }
  static char byte_at(uint64_t i, int seed) { return char((i * 7 + uint64_t(seed)) % 251); }

  // Item `name` of bytes [offset, offset + n) of `path` (seed `seed`), as u8 [n].
  static ReadAhead::Item item(const std::string& name, const std::string& path, uint64_t offset, uint64_t n) {
    return ReadAhead::Item{name, DType::u8, {int64_t(n)}, {{path, offset, n}}};
  }

  static void expect_bytes(const Tensor& t, uint64_t offset, int seed, const std::string& what) {
    const char* p = static_cast<const char*>(t.raw());
    for (uint64_t i = 0; i < t.nbytes(); ++i)
      if (p[i] != byte_at(offset + i, seed)) {
        ADD_FAILURE() << what << ": byte " << i << " differs";
        return;
      }
  }

  fs::path dir_;
};

TEST_F(ReadAheadTest, ItemsHoldTheirBytesTakenInOrderOrNotAndPartsLandBackToBack) {
  const std::string a = write_file("a", 1 << 20, 1), b = write_file("b", 300'000, 2);
  std::vector<ReadAhead::Item> items;
  for (int i = 0; i < 12; ++i) items.push_back(item("t" + std::to_string(i), a, uint64_t(i) * 80'000, 70'001));
  // A fused item: 10 000 bytes of b then 5 000 bytes of a, as i32 [3750].
  items.push_back(ReadAhead::Item{"fused", DType::i32, {3750}, {{b, 123, 10'000}, {a, 5, 5'000}}});
  ReadAhead ahead(items, {.num_threads = 4, .chunk_bytes = 4096, .budget_bytes = 1 << 20});
  EXPECT_EQ(ahead.find("t3"), 3);
  EXPECT_EQ(ahead.find("nope"), -1);
  // Out of order first: the last, then the rest.
  auto fused = ahead.take(12);
  ASSERT_TRUE(fused.ok()) << fused.error().message;
  EXPECT_EQ(fused->dtype(), DType::i32);
  EXPECT_EQ(fused->shape(), std::vector<int64_t>{3750});
  expect_bytes(fused->rows(0, 2500), 123, 2, "fused part from b");
  const char* tail = static_cast<const char*>(fused->raw()) + 10'000;
  for (int i = 0; i < 5'000; ++i) ASSERT_EQ(tail[i], byte_at(5 + uint64_t(i), 1)) << "fused part from a, byte " << i;
  for (size_t i = 0; i < 12; ++i) {
    auto t = ahead.take(i);
    ASSERT_TRUE(t.ok()) << t.error().message;
    expect_bytes(t.value(), i * 80'000, 1, "item " + std::to_string(i));
  }
  EXPECT_EQ(ahead.held_bytes(), 0u);
  auto again = ahead.take(3);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("taken twice"), std::string::npos) << again.error().message;
  EXPECT_FALSE(ahead.take(99).ok());
}

TEST_F(ReadAheadTest, HeldBytesStayWithinTheBudgetAndAnItemLargerThanItGoesAlone) {
  const std::string a = write_file("a", 2 << 20, 3);
  std::vector<ReadAhead::Item> items;
  for (int i = 0; i < 16; ++i) items.push_back(item("t" + std::to_string(i), a, uint64_t(i) * 100'000, 100'000));
  items.push_back(item("big", a, 0, 700'000));  // larger than the budget
  items.push_back(item("after", a, 5, 10));
  const uint64_t budget = 250'000;  // two items of 100 000 fit, not three
  ReadAhead ahead(items, {.num_threads = 4, .chunk_bytes = 8192, .budget_bytes = budget});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the readers fill the budget and stop
  EXPECT_EQ(ahead.held_bytes(), 200'000u);
  EXPECT_EQ(ahead.bytes_read(), 200'000u) << "readers read no further than the budget";
  for (size_t i = 0; i < items.size(); ++i) {
    auto t = ahead.take(i);
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_LE(ahead.held_bytes(), 700'000u);
    expect_bytes(t.value(), items[i].parts[0].offset, 3, items[i].name);
  }
  EXPECT_EQ(ahead.peak_held_bytes(), 700'000u) << "the big item was held alone";
  EXPECT_EQ(ahead.num_read_by_consumer(), 0u) << "in-order takes never read themselves";
}

TEST_F(ReadAheadTest, TakingPastAStuckBudgetReadsTheItemItselfWithoutWaitingForever) {
  const std::string a = write_file("a", 1 << 20, 4);
  std::vector<ReadAhead::Item> items;
  for (int i = 0; i < 10; ++i) items.push_back(item("t" + std::to_string(i), a, uint64_t(i) * 100'000, 100'000));
  ReadAhead ahead(items, {.num_threads = 2, .chunk_bytes = 8192, .budget_bytes = 150'000});
  // Item 9 is far past what the budget lets the readers start before anything is taken.
  auto last = ahead.take(9);
  ASSERT_TRUE(last.ok()) << last.error().message;
  expect_bytes(last.value(), 900'000, 4, "item 9");
  EXPECT_EQ(ahead.num_read_by_consumer(), 1u);
  for (size_t i = 0; i < 9; ++i) {
    auto t = ahead.take(i);
    ASSERT_TRUE(t.ok()) << t.error().message;
    expect_bytes(t.value(), i * 100'000, 4, "item " + std::to_string(i));
  }
}

TEST_F(ReadAheadTest, ReadErrorsReachTakeNamingTensorAndFileAndOtherItemsStillLoad) {
  const std::string a = write_file("a", 100'000, 5);
  const std::string gone = (dir_ / "gone").string();
  ReadAhead ahead({item("ok0", a, 0, 50'000), item("truncated", a, 90'000, 20'000), item("missing", gone, 0, 10),
                   ReadAhead::Item{"bad_shape", DType::f32, {4}, {{a, 0, 15}}}, item("ok1", a, 50'000, 40'000)},
                  {.num_threads = 3, .chunk_bytes = 4096, .budget_bytes = 1 << 20});
  auto ok0 = ahead.take(0);
  ASSERT_TRUE(ok0.ok()) << ok0.error().message;
  auto truncated = ahead.take(1);
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.error().code, ErrorCode::corrupt_data);
  EXPECT_NE(truncated.error().message.find("'truncated'"), std::string::npos) << truncated.error().message;
  EXPECT_NE(truncated.error().message.find(a), std::string::npos) << truncated.error().message;
  EXPECT_NE(truncated.error().message.find("the file ends early"), std::string::npos) << truncated.error().message;
  auto missing = ahead.take(2);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot open"), std::string::npos) << missing.error().message;
  EXPECT_NE(missing.error().message.find(gone), std::string::npos) << missing.error().message;
  auto bad = ahead.take(3);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("needs 16"), std::string::npos) << bad.error().message;
  auto ok1 = ahead.take(4);
  ASSERT_TRUE(ok1.ok()) << ok1.error().message;
  expect_bytes(ok1.value(), 50'000, 5, "ok1");
  EXPECT_EQ(ahead.held_bytes(), 0u);
}

TEST_F(ReadAheadTest, CancelJoinsTheReadersAndLaterTakesStillGetTheirBytes) {
  const std::string a = write_file("a", 4 << 20, 6);
  std::vector<ReadAhead::Item> items;
  for (int i = 0; i < 40; ++i) items.push_back(item("t" + std::to_string(i), a, uint64_t(i) * 100'000, 100'000));
  {
    ReadAhead ahead(items, {.num_threads = 4, .chunk_bytes = 4096, .budget_bytes = 300'000});
    ASSERT_TRUE(ahead.take(0).ok());
    const auto start = std::chrono::steady_clock::now();
    ahead.cancel();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_LT(ahead.bytes_read(), 4'000'000u) << "the readers stopped before the end";
    // Items the readers left (not started, or started and cut short) are read by take itself.
    for (size_t i = 1; i < items.size(); ++i) {
      auto t = ahead.take(i);
      ASSERT_TRUE(t.ok()) << t.error().message;
      expect_bytes(t.value(), i * 100'000, 6, "item " + std::to_string(i));
    }
  }
  // A destructor with readers blocked on the budget returns (the load failed midway).
  const auto start = std::chrono::steady_clock::now();
  {
    ReadAhead abandoned(items, {.num_threads = 4, .chunk_bytes = 4096, .budget_bytes = 100'000});
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

}  // namespace
}  // namespace troupe

namespace troupe {
namespace {

TEST(HostRing, HandsOutBlocksInRingOrderReusesFreedRoomAndRefusesWhenFull) {
  auto ring = HostRing::create(2 << 20);  // 2 MiB: 512 pages
  Tensor a = ring->allocate(DType::u8, {1 << 20});
  Tensor b = ring->allocate(DType::u8, {600 << 10});
  ASSERT_TRUE(a.defined() && b.defined());
  EXPECT_EQ(static_cast<char*>(b.raw()) - static_cast<char*>(a.raw()), 1 << 20);
  EXPECT_FALSE(ring->allocate(DType::u8, {600 << 10}).defined()) << "no contiguous room left";
  std::memset(a.raw(), 1, a.nbytes());
  const void* first = a.raw();
  a = Tensor();  // the oldest block freed: its room comes back at the start
  Tensor c = ring->allocate(DType::f32, {128'000});  // 512 000 bytes: no room after b, so at the start
  ASSERT_TRUE(c.defined());
  EXPECT_EQ(c.raw(), first);
  EXPECT_EQ(ring->live_bytes(), size_t(600 << 10) + 512'000u);
  Tensor view = c.rows(10, 5);  // a view keeps the block alive
  c = Tensor();
  b = Tensor();
  EXPECT_EQ(ring->live_bytes(), 512'000u) << "b freed; c still held by its view";
  EXPECT_FALSE(ring->allocate(DType::u8, {3 << 20}).defined()) << "larger than the ring";
  view = Tensor();
  EXPECT_EQ(ring->live_bytes(), 0u);
  EXPECT_TRUE(ring->allocate(DType::u8, {2 << 20}).defined()) << "empty again: the whole ring";
}

TEST_F(ReadAheadTest, ItemsTakenAndDroppedInOrderAreReadIntoTheReusedRing) {
  const std::string a = write_file("a", 1 << 20, 8);
  std::vector<ReadAhead::Item> items;
  for (int i = 0; i < 20; ++i) items.push_back(item("t" + std::to_string(i), a, uint64_t(i) * 50'000, 50'000));
  ReadAhead ahead(items, {.num_threads = 2, .chunk_bytes = 8192, .budget_bytes = 120'000, .ring_bytes = 300'000});
  for (size_t i = 0; i < items.size(); ++i) {
    auto t = ahead.take(i);  // dropped at the end of the iteration
    ASSERT_TRUE(t.ok()) << t.error().message;
    expect_bytes(t.value(), i * 50'000, 8, "item " + std::to_string(i));
  }
  EXPECT_EQ(ahead.num_in_ring(), items.size()) << "the ring (room for 5) never ran out with 2 held + 1 in use";
}

}  // namespace
}  // namespace troupe
