#include "engine/block_manager.hpp"

#include <algorithm>
#include <string>

namespace troupe {
namespace {

const std::vector<int32_t> kEmptyTable;

Error unknown_seq(int64_t seq_id) {
  return make_error(ErrorCode::not_found, "block manager: unknown sequence " + std::to_string(seq_id));
}

}  // namespace

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching)
    : num_blocks_(std::max<int64_t>(num_blocks, 0)),
      block_size_(std::max<int64_t>(block_size, 1)),
      prefix_caching_(enable_prefix_caching),
      evictable_pos_(num_blocks_),
      ref_counts_(num_blocks_, 0),
      keys_(num_blocks_) {
  free_blocks_.reserve(num_blocks_);
  // Reverse so that block 0 is handed out first.
  for (int64_t i = num_blocks_ - 1; i >= 0; --i) free_blocks_.push_back(static_cast<int32_t>(i));
}

int64_t BlockManager::num_blocks_for(int64_t num_tokens) const {
  return num_tokens <= 0 ? 0 : (num_tokens + block_size_ - 1) / block_size_;
}

std::vector<int32_t> BlockManager::cached_prefix(const std::vector<BlockHash>& hashes, const TokenSpan& tokens,
                                                 int64_t max_blocks) const {
  std::vector<int32_t> hit;
  if (!prefix_caching_) return hit;
  const int64_t limit = std::min<int64_t>({max_blocks, int64_t(hashes.size()), tokens.size() / block_size_});
  for (int64_t i = 0; i < limit; ++i) {
    auto it = cached_.find(hashes[i]);
    if (it == cached_.end()) break;
    const BlockKey& key = keys_[it->second];
    bool same = true;
    for (int64_t t = 0; t < block_size_ && same; ++t) same = key.tokens[t] == tokens[i * block_size_ + t];
    if (!same) break;  // a hash collision: treat as a miss
    hit.push_back(it->second);
  }
  return hit;
}

bool BlockManager::can_allocate(int64_t num_tokens, const std::vector<int32_t>& cached) const {
  int64_t needed = num_blocks_for(num_tokens) - int64_t(cached.size());
  for (int32_t b : cached)
    if (ref_counts_[b] == 0) ++needed;  // an evictable hit leaves the free pool too
  return needed <= num_free_blocks();
}

int32_t BlockManager::take_block() {
  int32_t b;
  if (!free_blocks_.empty()) {
    b = free_blocks_.back();
    free_blocks_.pop_back();
  } else {
    b = evictable_.front();
    evictable_.pop_front();
    forget_key(b);
  }
  ref_counts_[b] = 1;
  return b;
}

void BlockManager::forget_key(int32_t block) {
  BlockKey& key = keys_[block];
  if (!key.has_key) return;
  auto it = cached_.find(key.hash);
  if (it != cached_.end() && it->second == block) cached_.erase(it);
  key.has_key = false;
  key.tokens.clear();
}

Status BlockManager::allocate(int64_t seq_id, int64_t num_tokens, const std::vector<int32_t>& cached) {
  if (has(seq_id))
    return make_error(ErrorCode::invalid_argument,
                      "block manager: sequence " + std::to_string(seq_id) + " already has blocks");
  if (num_tokens < 1)
    return make_error(ErrorCode::invalid_argument,
                      "block manager: allocate needs num_tokens >= 1, got " + std::to_string(num_tokens));
  const int64_t needed = num_blocks_for(num_tokens);
  if (int64_t(cached.size()) > needed)
    return make_error(ErrorCode::invalid_argument, "block manager: " + std::to_string(cached.size()) +
                                                       " cached blocks for " + std::to_string(num_tokens) + " tokens");
  for (int32_t b : cached)
    if (b < 0 || b >= num_blocks_ || !keys_[b].has_key)
      return make_error(ErrorCode::invalid_argument, "block manager: block " + std::to_string(b) + " is not cached");
  if (!can_allocate(num_tokens, cached))
    return make_error(ErrorCode::out_of_resources, "block manager: need " +
                                                       std::to_string(needed - int64_t(cached.size())) +
                                                       " new blocks, " + std::to_string(num_free_blocks()) + " free");
  Entry entry;
  entry.num_tokens = num_tokens;
  entry.num_keyed = int64_t(cached.size());
  entry.blocks.reserve(needed);
  // Claim the hits first, so taking new blocks cannot evict them.
  for (int32_t b : cached) {
    if (ref_counts_[b]++ == 0) evictable_.erase(evictable_pos_[b]);
    entry.blocks.push_back(b);
  }
  while (int64_t(entry.blocks.size()) < needed) entry.blocks.push_back(take_block());
  tables_.emplace(seq_id, std::move(entry));
  return Status::success();
}

bool BlockManager::can_append(int64_t seq_id) const {
  auto it = tables_.find(seq_id);
  return it != tables_.end() && can_append(seq_id, it->second.num_tokens + 1);
}

bool BlockManager::can_append(int64_t seq_id, int64_t new_total_tokens) const {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return false;
  const int64_t extra = num_blocks_for(new_total_tokens) - static_cast<int64_t>(it->second.blocks.size());
  return extra <= num_free_blocks();
}

Status BlockManager::append_slot(int64_t seq_id, int64_t new_total_tokens) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return unknown_seq(seq_id);
  Entry& entry = it->second;
  if (new_total_tokens < entry.num_tokens)
    return make_error(ErrorCode::invalid_argument,
                      "block manager: sequence " + std::to_string(seq_id) + " cannot shrink from " +
                          std::to_string(entry.num_tokens) + " to " + std::to_string(new_total_tokens) + " tokens");
  const int64_t extra = num_blocks_for(new_total_tokens) - static_cast<int64_t>(entry.blocks.size());
  if (extra > num_free_blocks())
    return make_error(ErrorCode::out_of_resources, "block manager: sequence " + std::to_string(seq_id) + " needs " +
                                                       std::to_string(extra) + " more blocks, " +
                                                       std::to_string(num_free_blocks()) + " free");
  for (int64_t i = 0; i < extra; ++i) entry.blocks.push_back(take_block());
  entry.num_tokens = new_total_tokens;
  return Status::success();
}

void BlockManager::cache_full_blocks(int64_t seq_id, const std::vector<BlockHash>& hashes, const TokenSpan& tokens,
                                     int64_t num_computed_tokens) {
  if (!prefix_caching_) return;
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  Entry& entry = it->second;
  const int64_t num_full = std::min<int64_t>({num_computed_tokens / block_size_, int64_t(entry.blocks.size()),
                                              int64_t(hashes.size()), tokens.size() / block_size_});
  for (int64_t i = entry.num_keyed; i < num_full; ++i) {
    const int32_t b = entry.blocks[i];
    BlockKey& key = keys_[b];
    if (key.has_key || cached_.count(hashes[i])) continue;  // already keyed, or another block holds this prefix
    key.has_key = true;
    key.hash = hashes[i];
    key.tokens.resize(block_size_);
    for (int64_t t = 0; t < block_size_; ++t) key.tokens[t] = tokens[i * block_size_ + t];
    cached_.emplace(hashes[i], b);
  }
  entry.num_keyed = std::max(entry.num_keyed, num_full);
}

Status BlockManager::free(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return unknown_seq(seq_id);
  // Tail first: the tail becomes the least recently used, so it is evicted before the prefix, and
  // the next allocation reuses the most recently freed (cache-warm) unkeyed blocks.
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b) {
    if (--ref_counts_[*b] > 0) continue;
    if (keys_[*b].has_key) {
      evictable_pos_[*b] = evictable_.insert(evictable_.end(), *b);
    } else {
      free_blocks_.push_back(*b);
    }
  }
  tables_.erase(it);
  return Status::success();
}

const std::vector<int32_t>& BlockManager::block_table(int64_t seq_id) const {
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? kEmptyTable : it->second.blocks;
}

int64_t BlockManager::num_tokens(int64_t seq_id) const {
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? 0 : it->second.num_tokens;
}

Status BlockManager::check_invariants() const {
  auto broken = [](const std::string& why) { return make_error(ErrorCode::internal, "block manager: " + why); };
  std::vector<int8_t> state(num_blocks_, 0);  // 1: free, 2: evictable
  for (int32_t b : free_blocks_) {
    if (b < 0 || b >= num_blocks_) return broken("free list holds bad block " + std::to_string(b));
    if (state[b] != 0) return broken("block " + std::to_string(b) + " is free twice");
    if (keys_[b].has_key) return broken("free block " + std::to_string(b) + " has a key");
    state[b] = 1;
  }
  for (int32_t b : evictable_) {
    if (b < 0 || b >= num_blocks_) return broken("evictable list holds bad block " + std::to_string(b));
    if (state[b] != 0) return broken("block " + std::to_string(b) + " is free or evictable twice");
    if (!keys_[b].has_key) return broken("evictable block " + std::to_string(b) + " has no key");
    state[b] = 2;
  }
  std::vector<int32_t> refs(num_blocks_, 0);
  for (const auto& [seq_id, entry] : tables_) {
    if (static_cast<int64_t>(entry.blocks.size()) != num_blocks_for(entry.num_tokens))
      return broken("sequence " + std::to_string(seq_id) + " has " + std::to_string(entry.blocks.size()) +
                    " blocks for " + std::to_string(entry.num_tokens) + " tokens");
    for (size_t i = 0; i < entry.blocks.size(); ++i) {
      const int32_t b = entry.blocks[i];
      if (b < 0 || b >= num_blocks_) return broken("table holds bad block " + std::to_string(b));
      if (state[b] != 0)
        return broken("block " + std::to_string(b) + " is free and owned (sequence " + std::to_string(seq_id) + ")");
      for (size_t j = 0; j < i; ++j)
        if (entry.blocks[j] == b) return broken("block " + std::to_string(b) + " twice in one table");
      ++refs[b];
    }
  }
  for (int64_t b = 0; b < num_blocks_; ++b) {
    if (refs[b] != ref_counts_[b])
      return broken("block " + std::to_string(b) + " has ref count " + std::to_string(ref_counts_[b]) + ", " +
                    std::to_string(refs[b]) + " table slots");
    if (refs[b] > 1 && !keys_[b].has_key) return broken("block " + std::to_string(b) + " is shared without a key");
    if (state[b] == 0 && refs[b] == 0) return broken("block " + std::to_string(b) + " is lost");
    if (keys_[b].has_key) {
      auto it = cached_.find(keys_[b].hash);
      if (it == cached_.end() || it->second != b) return broken("block " + std::to_string(b) + "'s key is not mapped");
    }
  }
  for (const auto& [hash, b] : cached_)
    if (b < 0 || b >= num_blocks_ || !keys_[b].has_key || !(keys_[b].hash == hash))
      return broken("key map names block " + std::to_string(b) + " with another key");
  if (!prefix_caching_ && !cached_.empty()) return broken("keys with prefix caching off");
  return Status::success();
}

}  // namespace troupe
