#pragma once
// Paged KV-cache block allocator (vLLM style, no prefix caching). Each sequence owns a block table:
// block i holds the KV of token positions [i * block_size, (i + 1) * block_size).
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

class BlockManager {
 public:
  BlockManager(int64_t num_blocks, int64_t block_size);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t num_free_blocks() const { return static_cast<int64_t>(free_blocks_.size()); }
  int64_t num_used_blocks() const { return num_blocks_ - num_free_blocks(); }
  // ceil(num_tokens / block_size)
  int64_t num_blocks_for(int64_t num_tokens) const;

  bool has(int64_t seq_id) const { return tables_.count(seq_id) != 0; }
  int64_t num_sequences() const { return static_cast<int64_t>(tables_.size()); }
  bool can_allocate(int64_t num_tokens) const;
  // New table covering num_tokens (>= 1) positions. Errors: seq_id already allocated
  // (invalid_argument), not enough free blocks (out_of_resources); nothing changes on error.
  Status allocate(int64_t seq_id, int64_t num_tokens);

  // Whether the sequence can grow to new_total_tokens (default: one more token).
  bool can_append(int64_t seq_id) const;
  bool can_append(int64_t seq_id, int64_t new_total_tokens) const;
  // Grows the table to cover new_total_tokens, taking a block at each block boundary crossed.
  // Errors: unknown seq (not_found), shrinking (invalid_argument), no free block (out_of_resources).
  Status append_slot(int64_t seq_id, int64_t new_total_tokens);

  // Returns every block of the sequence. Unknown or already freed seq: not_found, nothing changes.
  Status free(int64_t seq_id);

  // The sequence's block ids; empty for an unknown sequence.
  const std::vector<int32_t>& block_table(int64_t seq_id) const;
  int64_t num_tokens(int64_t seq_id) const;  // positions covered; 0 if unknown

  // For tests: every block is free xor owned by exactly one sequence; tables match token counts.
  Status check_invariants() const;

 private:
  struct Entry {
    std::vector<int32_t> blocks;
    int64_t num_tokens = 0;
  };

  int64_t num_blocks_;
  int64_t block_size_;
  std::vector<int32_t> free_blocks_;  // stack; the back is handed out next
  std::unordered_map<int64_t, Entry> tables_;
};

}  // namespace troupe
