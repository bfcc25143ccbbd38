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

// ---- prefix caching ----

std::vector<int32_t> iota_tokens(int64_t n, int32_t first = 100) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = first + int32_t(i);
  return t;
}

std::vector<BlockHash> hashes_of(const std::vector<int32_t>& tokens, int64_t block_size) {
  std::vector<BlockHash> h;
  extend_block_hashes(h, TokenSpan{&tokens, nullptr}, block_size);
  return h;
}

// Allocates `tokens` for seq_id after its cached prefix (at most all but the last token), marks it
// all computed; returns the number of hit blocks.
int64_t admit(BlockManager& bm, int64_t seq_id, const std::vector<int32_t>& tokens) {
  const auto hashes = hashes_of(tokens, bm.block_size());
  const TokenSpan span{&tokens, nullptr};
  auto cached = bm.cached_prefix(hashes, span, (int64_t(tokens.size()) - 1) / bm.block_size());
  EXPECT_TRUE(bm.allocate(seq_id, int64_t(tokens.size()), cached).ok());
  bm.cache_full_blocks(seq_id, hashes, span, int64_t(tokens.size()));
  return int64_t(cached.size());
}

TEST(BlockHashChain, KeysNameTheWholePrefix) {
  const auto a = iota_tokens(12);
  auto b = a;
  b[1] = 7;  // differs in block 0 only
  const auto ha = hashes_of(a, 4), hb = hashes_of(b, 4);
  ASSERT_EQ(ha.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_FALSE(ha[i] == hb[i]) << "block " << i << " ignores its parent";
  EXPECT_EQ(hashes_of(a, 4)[2], ha[2]);  // deterministic
  // Partial blocks have no key; extending keeps the old keys.
  const auto part = iota_tokens(7);
  auto h = hashes_of(part, 4);
  EXPECT_EQ(h.size(), 1u);
  extend_block_hashes(h, TokenSpan{&a, nullptr}, 4);
  EXPECT_EQ(h, ha);
  // The extra key changes every key; so does the split between prompt and output (it must not).
  std::vector<BlockHash> salted;
  extend_block_hashes(salted, TokenSpan{&a, nullptr}, 4, 42);
  EXPECT_FALSE(salted[0] == ha[0]);
  std::vector<int32_t> head(a.begin(), a.begin() + 5), tail(a.begin() + 5, a.end());
  std::vector<BlockHash> split;
  extend_block_hashes(split, TokenSpan{&head, &tail}, 4);
  EXPECT_EQ(split, ha);
}

TEST(BlockManagerPrefixCache, HitsTheLongestCachedPrefixOfFullBlocks) {
  BlockManager bm(16, 4, true);
  const auto first = iota_tokens(10);  // blocks [0,4) [4,8) full, [8,10) partial
  EXPECT_EQ(admit(bm, 1, first), 0);
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  // Shares 9 tokens: both full blocks hit; the partial block never does.
  auto second = iota_tokens(14);
  EXPECT_EQ(admit(bm, 2, second), 2);
  EXPECT_EQ(bm.block_table(2)[0], bm.block_table(1)[0]);
  EXPECT_EQ(bm.block_table(2)[1], bm.block_table(1)[1]);
  EXPECT_NE(bm.block_table(2)[2], bm.block_table(1)[2]);
  EXPECT_EQ(bm.ref_count(bm.block_table(1)[0]), 2);
  // Differs in block 1: only block 0 hits.
  auto third = iota_tokens(12);
  third[5] = 9;
  EXPECT_EQ(admit(bm, 3, third), 1);
  EXPECT_EQ(bm.ref_count(bm.block_table(1)[0]), 3);
  // Exactly the cached tokens: never the whole prompt, the last block is recomputed.
  const auto exact = iota_tokens(8);
  EXPECT_EQ(admit(bm, 4, exact), 1);
  ASSERT_TRUE(bm.check_invariants().ok()) << bm.check_invariants().error().message;
}

TEST(BlockManagerPrefixCache, OnlyComputedBlocksAreCached) {
  BlockManager bm(8, 4, true);
  const auto tokens = iota_tokens(12);
  const auto hashes = hashes_of(tokens, 4);
  const TokenSpan span{&tokens, nullptr};
  ASSERT_TRUE(bm.allocate(1, 12).ok());
  bm.cache_full_blocks(1, hashes, span, 6);  // a first chunk of 6: block 0 only
  EXPECT_EQ(bm.num_cached_blocks(), 1);
  EXPECT_EQ(bm.cached_prefix(hashes, span, 3).size(), 1u);
  bm.cache_full_blocks(1, hashes, span, 12);
  EXPECT_EQ(bm.cached_prefix(hashes, span, 3).size(), 3u);
  EXPECT_EQ(bm.cached_prefix(hashes, span, 2).size(), 2u);  // max_blocks
  // A collision is ruled out by the tokens: same keys, other tokens => miss.
  auto other = tokens;
  other[0] = 1;
  EXPECT_TRUE(bm.cached_prefix(hashes, TokenSpan{&other, nullptr}, 3).empty());
  ASSERT_TRUE(bm.check_invariants().ok());
}

TEST(BlockManagerPrefixCache, FreedCachedBlocksCountAsFreeAndAreEvictedLeastRecentlyUsedFirst) {
  BlockManager bm(6, 2, true);
  const auto a = iota_tokens(4, 100);  // 2 full blocks
  const auto b = iota_tokens(4, 200);
  EXPECT_EQ(admit(bm, 1, a), 0);
  EXPECT_EQ(admit(bm, 2, b), 0);
  const auto table_a = bm.block_table(1), table_b = bm.block_table(2);
  EXPECT_EQ(bm.num_free_blocks(), 2);
  ASSERT_TRUE(bm.free(1).ok());  // a's blocks: evictable, tail first
  ASSERT_TRUE(bm.free(2).ok());
  EXPECT_EQ(bm.num_free_blocks(), 6);
  EXPECT_EQ(bm.num_used_blocks(), 0);
  EXPECT_EQ(bm.num_evictable_blocks(), 4);
  EXPECT_EQ(bm.num_cached_blocks(), 4);
  ASSERT_TRUE(bm.check_invariants().ok());
  // Two unkeyed free blocks go first, then a's tail, then a's head, then b's tail.
  ASSERT_TRUE(bm.allocate(3, 6).ok());  // 3 blocks: 2 free + a's tail
  EXPECT_FALSE(bm.is_cached(table_a[1]));
  EXPECT_TRUE(bm.is_cached(table_a[0]));
  ASSERT_TRUE(bm.append_slot(3, 8).ok());  // a's head
  EXPECT_FALSE(bm.is_cached(table_a[0]));
  EXPECT_TRUE(bm.is_cached(table_b[0]) && bm.is_cached(table_b[1]));
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  // b still hits; a no longer.
  const auto hb = hashes_of(b, 2), ha = hashes_of(a, 2);
  EXPECT_EQ(bm.cached_prefix(hb, TokenSpan{&b, nullptr}, 2).size(), 2u);
  EXPECT_TRUE(bm.cached_prefix(ha, TokenSpan{&a, nullptr}, 2).empty());
  ASSERT_TRUE(bm.check_invariants().ok()) << bm.check_invariants().error().message;
}

TEST(BlockManagerPrefixCache, AHitMovesABlockToMostRecentlyUsed) {
  BlockManager bm(4, 2, true);
  const auto a = iota_tokens(3, 100), b = iota_tokens(3, 200);  // one full block each
  admit(bm, 1, a);
  admit(bm, 2, b);
  const int32_t a0 = bm.block_table(1)[0], b0 = bm.block_table(2)[0];
  ASSERT_TRUE(bm.free(1).ok());
  ASSERT_TRUE(bm.free(2).ok());
  // a's block is the least recently used; a hit and a free make it the most recent.
  EXPECT_EQ(admit(bm, 3, a), 1);
  ASSERT_TRUE(bm.free(3).ok());
  ASSERT_TRUE(bm.allocate(4, 5).ok());  // 3 blocks: the 2 unkeyed ones, then b0 (older than a0)
  EXPECT_FALSE(bm.is_cached(b0));
  EXPECT_TRUE(bm.is_cached(a0));
  ASSERT_TRUE(bm.free(4).ok());
  EXPECT_EQ(admit(bm, 5, a), 1);
  EXPECT_EQ(admit(bm, 6, b), 0);
  ASSERT_TRUE(bm.free(6).ok());
  ASSERT_TRUE(bm.free(5).ok());  // now b's block is older
  ASSERT_TRUE(bm.allocate(7, 5).ok());  // 3 blocks: the 2 unkeyed ones first, then b's
  const auto ha = hashes_of(a, 2), hb = hashes_of(b, 2);
  EXPECT_EQ(bm.cached_prefix(ha, TokenSpan{&a, nullptr}, 1).size(), 1u);
  EXPECT_TRUE(bm.cached_prefix(hb, TokenSpan{&b, nullptr}, 1).empty());
  ASSERT_TRUE(bm.check_invariants().ok()) << bm.check_invariants().error().message;
}

TEST(BlockManagerPrefixCache, HitsOnEvictableBlocksCountAgainstFreeBlocks) {
  BlockManager bm(4, 2, true);
  const auto a = iota_tokens(5);  // 2 full blocks + 1
  admit(bm, 1, a);
  ASSERT_TRUE(bm.free(1).ok());
  EXPECT_EQ(bm.num_free_blocks(), 4);
  const auto ha = hashes_of(a, 2);
  const auto cached = bm.cached_prefix(ha, TokenSpan{&a, nullptr}, 2);
  ASSERT_EQ(cached.size(), 2u);
  // 8 tokens = 4 blocks: 2 hits (both evictable, so they leave the pool) + 2 new = 4.
  EXPECT_TRUE(bm.can_allocate(8, cached));
  EXPECT_FALSE(bm.can_allocate(9, cached));
  ASSERT_FALSE(bm.allocate(2, 9, cached).ok());
  ASSERT_TRUE(bm.check_invariants().ok());
  ASSERT_TRUE(bm.allocate(2, 8, cached).ok());
  EXPECT_EQ(bm.num_free_blocks(), 0);
  EXPECT_EQ(bm.block_table(2)[0], cached[0]);
  ASSERT_TRUE(bm.check_invariants().ok()) << bm.check_invariants().error().message;
}

TEST(BlockManagerPrefixCache, APreemptedSequenceFindsItsOwnBlocks) {
  BlockManager bm(8, 4, true);
  auto prompt = iota_tokens(6);
  std::vector<int32_t> output;
  const TokenSpan span{&prompt, &output};
  std::vector<BlockHash> hashes;
  ASSERT_TRUE(bm.allocate(1, 6).ok());
  extend_block_hashes(hashes, span, 4);
  bm.cache_full_blocks(1, hashes, span, 6);
  // Decode 5 tokens: positions 6..10 computed; the last output's KV is not.
  for (int32_t t = 0; t < 5; ++t) {
    output.push_back(900 + t);
    ASSERT_TRUE(bm.append_slot(1, span.size()).ok());
    extend_block_hashes(hashes, span, 4);
    bm.cache_full_blocks(1, hashes, span, span.size() - 1);
  }
  EXPECT_EQ(span.size(), 11);
  EXPECT_EQ(bm.num_cached_blocks(), 2);  // positions 0..7
  const auto table = bm.block_table(1);
  ASSERT_TRUE(bm.free(1).ok());  // preempted
  const auto cached = bm.cached_prefix(hashes, span, (span.size() - 1) / 4);
  ASSERT_EQ(cached.size(), 2u);
  EXPECT_EQ(cached[0], table[0]);
  EXPECT_EQ(cached[1], table[1]);
  ASSERT_TRUE(bm.allocate(1, span.size(), cached).ok());
  ASSERT_TRUE(bm.check_invariants().ok()) << bm.check_invariants().error().message;
}

TEST(BlockManagerPrefixCache, TheSamePrefixComputedTwiceAtOnceKeepsOneKey) {
  BlockManager bm(8, 2, true);
  const auto a = iota_tokens(4);
  const auto h = hashes_of(a, 2);
  ASSERT_TRUE(bm.allocate(1, 4).ok());
  ASSERT_TRUE(bm.allocate(2, 4).ok());
  bm.cache_full_blocks(1, h, TokenSpan{&a, nullptr}, 4);
  bm.cache_full_blocks(2, h, TokenSpan{&a, nullptr}, 4);
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  EXPECT_FALSE(bm.is_cached(bm.block_table(2)[0]));
  ASSERT_TRUE(bm.free(2).ok());
  EXPECT_EQ(bm.num_evictable_blocks(), 0);  // its copies were unkeyed: plain free blocks
  ASSERT_TRUE(bm.check_invariants().ok()) << bm.check_invariants().error().message;
}

TEST(BlockManagerPrefixCache, OffCachesNothing) {
  BlockManager bm(8, 2, false);
  const auto a = iota_tokens(5);
  EXPECT_EQ(admit(bm, 1, a), 0);
  EXPECT_EQ(admit(bm, 2, a), 0);
  EXPECT_EQ(bm.num_cached_blocks(), 0);
  ASSERT_TRUE(bm.free(1).ok());
  EXPECT_EQ(bm.num_evictable_blocks(), 0);
  ASSERT_TRUE(bm.check_invariants().ok());
}

}  // namespace
}  // namespace troupe
