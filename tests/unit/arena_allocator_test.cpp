#include "backends/cuda/arena_allocator.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace troupe::cuda {
namespace {

constexpr size_t kA = ArenaAllocator::kAlignment;

TEST(ArenaAllocator, AlignsSizesAndRefusesWhatDoesNotFit) {
  ArenaAllocator arena(10 * kA + 7);  // the tail below one unit is unusable
  EXPECT_EQ(arena.capacity(), 10 * kA);
  auto a = arena.allocate(1), b = arena.allocate(kA + 1), c = arena.allocate(0);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(*a, 0u);
  EXPECT_EQ(*b, kA);
  EXPECT_EQ(*c, 3 * kA);
  EXPECT_EQ(arena.bytes_in_use(), 4 * kA);
  EXPECT_FALSE(arena.allocate(7 * kA));
  EXPECT_TRUE(arena.allocate(6 * kA));
  EXPECT_FALSE(arena.allocate(1));
  EXPECT_FALSE(arena.release(kA / 2));  // not an allocation's offset
}

TEST(ArenaAllocator, MergesFreedNeighboursSoTheWholeRegionComesBack) {
  ArenaAllocator arena(8 * kA);
  std::vector<size_t> offsets;
  for (int i = 0; i < 8; ++i) offsets.push_back(*arena.allocate(kA));
  // Free in an order that leaves holes on both sides before they join.
  for (int i : {1, 3, 2, 6, 0, 7, 5, 4}) EXPECT_TRUE(arena.release(offsets[size_t(i)]));
  EXPECT_FALSE(arena.release(offsets[0]));  // twice
  EXPECT_EQ(arena.bytes_in_use(), 0u);
  EXPECT_EQ(arena.peak_bytes_in_use(), 8 * kA);
  auto all = arena.allocate(8 * kA);
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, 0u);
}

TEST(ArenaAllocator, RandomTrafficNeverOverlapsAndAccountsExactly) {
  ArenaAllocator arena(1000 * kA);
  std::mt19937 rng(7);
  std::vector<std::pair<size_t, size_t>> live;  // offset, rounded size
  size_t expected = 0;
  for (int step = 0; step < 5000; ++step) {
    if (!live.empty() && rng() % 2 == 0) {
      const size_t k = rng() % live.size();
      ASSERT_TRUE(arena.release(live[k].first));
      expected -= live[k].second;
      live.erase(live.begin() + std::ptrdiff_t(k));
    } else {
      const size_t bytes = rng() % (20 * kA);
      auto offset = arena.allocate(bytes);
      if (!offset) continue;
      const size_t size = bytes == 0 ? kA : (bytes + kA - 1) / kA * kA;
      EXPECT_EQ(*offset % kA, 0u);
      EXPECT_LE(*offset + size, arena.capacity());
      for (const auto& [o, s] : live) EXPECT_TRUE(*offset + size <= o || o + s <= *offset) << "overlap";
      live.push_back({*offset, size});
      expected += size;
    }
    ASSERT_EQ(arena.bytes_in_use(), expected);
  }
}

}  // namespace
}  // namespace troupe::cuda
