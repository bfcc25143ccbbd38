#pragma once
// Keys of full KV-cache blocks for automatic prefix caching (vLLM's block hashes).
//
// A full block's key is the first 128 bits of SHA-256 over (the parent block's key, the extra key,
// the block's token ids as little-endian int32): a chain, so a block's key names its whole prefix.
// The first block's parent is the zero key. The extra key holds whatever else changes the KV for
// the same tokens (0 today: one engine serves one model, without LoRA or multimodal inputs).
// Truncated SHA-256 makes a collision practically impossible; the block manager still compares the
// block's tokens on a hit.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace troupe {

struct BlockHash {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const BlockHash&) const = default;
};

struct BlockHashOf {
  size_t operator()(const BlockHash& h) const { return size_t(h.lo ^ (h.hi * 0x9e3779b97f4a7c15ULL)); }
};

// A read-only view of a sequence's tokens: `first` then `second` (prompt then output).
struct TokenSpan {
  const std::vector<int32_t>* first = nullptr;
  const std::vector<int32_t>* second = nullptr;

  int64_t size() const {
    return (first ? int64_t(first->size()) : 0) + (second ? int64_t(second->size()) : 0);
  }
  int32_t operator[](int64_t pos) const {
    const int64_t n = first ? int64_t(first->size()) : 0;
    return pos < n ? (*first)[pos] : (*second)[pos - n];
  }
};

// The key of the block holding tokens[begin, begin + block_size).
BlockHash hash_block(const BlockHash& parent, uint64_t extra_key, const TokenSpan& tokens, int64_t begin,
                     int64_t block_size);

// Appends to `hashes` the keys of every full block of `tokens` it lacks (it holds a prefix of them).
void extend_block_hashes(std::vector<BlockHash>& hashes, const TokenSpan& tokens, int64_t block_size,
                         uint64_t extra_key = 0);

}  // namespace troupe
