#include <gtest/gtest.h>

#include <set>

#include "engine/block_manager.hpp"

namespace troupe {
namespace {

TEST(BlockManager, AllocateCoversTokensAndFreeReturnsBlocks) {
  BlockManager bm(10, 4);
  EXPECT_EQ(bm.num_free_blocks(), 10);
  EXPECT_EQ(bm.num_blocks_for(0), 0);
  EXPECT_EQ(bm.num_blocks_for(4), 1);
  EXPECT_EQ(bm.num_blocks_for(5), 2);
  ASSERT_TRUE(bm.allocate(1, 9).ok());  // ceil(9 / 4) = 3 blocks
  EXPECT_EQ(bm.block_table(1).size(), 3u);
  EXPECT_EQ(bm.num_used_blocks(), 3);
  EXPECT_EQ(bm.num_tokens(1), 9);
  ASSERT_TRUE(bm.allocate(2, 1).ok());
  EXPECT_EQ(bm.num_used_blocks(), 4);
  ASSERT_TRUE(bm.check_invariants().ok());
  std::set<int32_t> ids(bm.block_table(1).begin(), bm.block_table(1).end());
  for (int32_t b : bm.block_table(2)) EXPECT_FALSE(ids.count(b)) << "block " << b << " shared";
  ASSERT_TRUE(bm.free(1).ok());
  EXPECT_EQ(bm.num_used_blocks(), 1);
  EXPECT_TRUE(bm.block_table(1).empty());
  ASSERT_TRUE(bm.free(2).ok());
  EXPECT_EQ(bm.num_used_blocks(), 0);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManager, AppendTakesABlockOnlyAtBoundaries) {
  BlockManager bm(4, 4);
  ASSERT_TRUE(bm.allocate(7, 3).ok());
  EXPECT_EQ(bm.num_used_blocks(), 1);
  ASSERT_TRUE(bm.append_slot(7, 4).ok());  // fills block 0
  EXPECT_EQ(bm.num_used_blocks(), 1);
  ASSERT_TRUE(bm.append_slot(7, 5).ok());  // crosses into block 1
  EXPECT_EQ(bm.num_used_blocks(), 2);
  ASSERT_TRUE(bm.append_slot(7, 8).ok());
  EXPECT_EQ(bm.num_used_blocks(), 2);
  ASSERT_TRUE(bm.append_slot(7, 13).ok());  // chunk of 5 crosses two boundaries
  EXPECT_EQ(bm.num_used_blocks(), 4);
  EXPECT_EQ(bm.block_table(7).size(), 4u);
  EXPECT_TRUE(bm.can_append(7, 16));
  EXPECT_FALSE(bm.can_append(7, 17));
  EXPECT_TRUE(bm.check_invariants().ok());
  Status shrink = bm.append_slot(7, 2);
  ASSERT_FALSE(shrink.ok());
  EXPECT_EQ(shrink.error().code, ErrorCode::invalid_argument);
}

TEST(BlockManager, ExhaustionIsAnErrorAndChangesNothing) {
  BlockManager bm(3, 2);
  EXPECT_TRUE(bm.can_allocate(6));
  EXPECT_FALSE(bm.can_allocate(7));
  Status too_big = bm.allocate(1, 7);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code, ErrorCode::out_of_resources);
  EXPECT_EQ(bm.num_used_blocks(), 0);
  EXPECT_FALSE(bm.has(1));
  ASSERT_TRUE(bm.allocate(1, 6).ok());
  EXPECT_FALSE(bm.can_append(1));
  Status full = bm.append_slot(1, 7);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ErrorCode::out_of_resources);
  EXPECT_EQ(bm.num_tokens(1), 6);
  EXPECT_EQ(bm.block_table(1).size(), 3u);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManager, DoubleFreeUnknownAndDuplicateAreErrors) {
  BlockManager bm(4, 2);
  ASSERT_TRUE(bm.allocate(1, 2).ok());
  Status dup = bm.allocate(1, 2);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::invalid_argument);
  ASSERT_TRUE(bm.free(1).ok());
  Status twice = bm.free(1);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, ErrorCode::not_found);
  EXPECT_FALSE(bm.free(99).ok());
  EXPECT_FALSE(bm.append_slot(99, 3).ok());
  EXPECT_FALSE(bm.can_append(99));
  EXPECT_FALSE(bm.allocate(2, 0).ok());
  EXPECT_EQ(bm.num_free_blocks(), 4);
  EXPECT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManager, ZeroBlocksAllocatesNothing) {
  BlockManager bm(0, 16);
  EXPECT_FALSE(bm.can_allocate(1));
  EXPECT_FALSE(bm.allocate(1, 1).ok());
  EXPECT_TRUE(bm.check_invariants().ok());
}

}  // namespace
}  // namespace troupe
