#pragma once
// Paged KV-cache block allocator (vLLM style) with automatic prefix caching. Each sequence owns a
// block table: block i holds the KV of token positions [i * block_size, (i + 1) * block_size).
//
// Prefix caching (vLLM's automatic prefix caching): once a full block's KV is computed, the
// scheduler registers it under its chained key (engine/block_hash.hpp) with cache_full_blocks.
// A new sequence's table may start with cached blocks (cached_prefix + allocate(..., cached)):
// blocks are reference counted and shared read-only, since a sequence only writes positions past
// its cached prefix. A block whose count drops to 0 keeps its KV and its key (it is "evictable"):
// a later hit takes it back; when a new block is needed and no uncached free block is left, the
// least recently freed evictable block is evicted (its key forgotten) and reused. A sequence's
// blocks are freed tail first, so its tail is evicted before its prefix.
//
//   block: free --take--> owned (ref >= 1) --free, no key--> free
//                            |  ^
//            free, with key  v  |  hit (cached_prefix + allocate)
//                         evictable --evict (needed for a new block)--> owned by the taker
//
// num_free_blocks() counts free and evictable blocks: both can be handed out.
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "engine/block_hash.hpp"
#include "runtime/result.hpp"

namespace troupe {

class BlockManager {
 public:
  BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching = false);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  bool prefix_caching() const { return prefix_caching_; }
  // Blocks a new token can go to: free ones plus evictable cached ones.
  int64_t num_free_blocks() const { return static_cast<int64_t>(free_blocks_.size() + evictable_.size()); }
  int64_t num_used_blocks() const { return num_blocks_ - num_free_blocks(); }
  int64_t num_cached_blocks() const { return static_cast<int64_t>(cached_.size()); }      // keyed, any ref
  int64_t num_evictable_blocks() const { return static_cast<int64_t>(evictable_.size()); }  // keyed, ref 0
  // ceil(num_tokens / block_size)
  int64_t num_blocks_for(int64_t num_tokens) const;

  bool has(int64_t seq_id) const { return tables_.count(seq_id) != 0; }
  int64_t num_sequences() const { return static_cast<int64_t>(tables_.size()); }

  // The longest run of leading blocks whose keys are cached, at most max_blocks (each hit's
  // tokens compared with `tokens`): their block ids, in order. Empty with prefix caching off.
  std::vector<int32_t> cached_prefix(const std::vector<BlockHash>& hashes, const TokenSpan& tokens,
                                     int64_t max_blocks) const;

  // Whether a table of num_tokens positions fits when it starts with the `cached` blocks.
  bool can_allocate(int64_t num_tokens, const std::vector<int32_t>& cached = {}) const;
  // New table covering num_tokens (>= 1) positions, starting with the `cached` blocks (from
  // cached_prefix, nothing changed since; num_tokens must reach past them). Errors: seq_id
  // already allocated or bad sizes (invalid_argument), not enough free blocks (out_of_resources);
  // nothing changes on error.
  Status allocate(int64_t seq_id, int64_t num_tokens, const std::vector<int32_t>& cached = {});

  // Whether the sequence can grow to new_total_tokens (default: one more token).
  bool can_append(int64_t seq_id) const;
  bool can_append(int64_t seq_id, int64_t new_total_tokens) const;
  // Grows the table to cover new_total_tokens, taking a block at each block boundary crossed.
  // Errors: unknown seq (not_found), shrinking (invalid_argument), no free block (out_of_resources).
  Status append_slot(int64_t seq_id, int64_t new_total_tokens);

  // Registers the sequence's full blocks whose KV is computed (the first num_computed_tokens
  // positions) under their keys (hashes[i] for block i, tokens compared on later hits). A key
  // already cached under another block (two sequences computed the same prefix at once) leaves
  // this block unkeyed. No-op with prefix caching off or an unknown sequence.
  void cache_full_blocks(int64_t seq_id, const std::vector<BlockHash>& hashes, const TokenSpan& tokens,
                         int64_t num_computed_tokens);

  // Drops one reference to each block of the sequence, tail first: unkeyed blocks become free,
  // keyed ones evictable (most recently used). Unknown or already freed seq: not_found.
  Status free(int64_t seq_id);

  // The sequence's block ids; empty for an unknown sequence.
  const std::vector<int32_t>& block_table(int64_t seq_id) const;
  int64_t num_tokens(int64_t seq_id) const;  // positions covered; 0 if unknown
  int32_t ref_count(int32_t block) const { return ref_counts_[block]; }
  bool is_cached(int32_t block) const { return keys_[block].has_key; }

  // For tests: every block is free, evictable (keyed, ref 0) or referenced by exactly its count of
  // table slots; keys and the key map agree; tables match token counts.
  Status check_invariants() const;

 private:
  struct Entry {
    std::vector<int32_t> blocks;
    int64_t num_tokens = 0;
    int64_t num_keyed = 0;  // leading blocks already offered to the cache
  };
  struct BlockKey {
    bool has_key = false;
    BlockHash hash;
    std::vector<int32_t> tokens;  // the block's token ids, compared on a hit
  };

  int32_t take_block();  // a free block, else the least recently used evictable one; ref 1
  void forget_key(int32_t block);

  int64_t num_blocks_;
  int64_t block_size_;
  bool prefix_caching_;
  std::vector<int32_t> free_blocks_;  // unkeyed, ref 0; stack, the back is handed out next
  std::list<int32_t> evictable_;      // keyed, ref 0; front: least recently used
  std::vector<std::list<int32_t>::iterator> evictable_pos_;  // valid while the block is evictable
  std::vector<int32_t> ref_counts_;
  std::vector<BlockKey> keys_;
  std::unordered_map<BlockHash, int32_t, BlockHashOf> cached_;
  std::unordered_map<int64_t, Entry> tables_;
};

}  // namespace troupe
