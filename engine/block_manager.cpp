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

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size)
    : num_blocks_(std::max<int64_t>(num_blocks, 0)), block_size_(std::max<int64_t>(block_size, 1)) {
  free_blocks_.reserve(num_blocks_);
  // Reverse so that block 0 is handed out first.
  for (int64_t i = num_blocks_ - 1; i >= 0; --i) free_blocks_.push_back(static_cast<int32_t>(i));
}

int64_t BlockManager::num_blocks_for(int64_t num_tokens) const {
  return num_tokens <= 0 ? 0 : (num_tokens + block_size_ - 1) / block_size_;
}

bool BlockManager::can_allocate(int64_t num_tokens) const {
  return num_blocks_for(num_tokens) <= num_free_blocks();
}

Status BlockManager::allocate(int64_t seq_id, int64_t num_tokens) {
  if (has(seq_id))
    return make_error(ErrorCode::invalid_argument,
                      "block manager: sequence " + std::to_string(seq_id) + " already has blocks");
  if (num_tokens < 1)
    return make_error(ErrorCode::invalid_argument,
                      "block manager: allocate needs num_tokens >= 1, got " + std::to_string(num_tokens));
  const int64_t needed = num_blocks_for(num_tokens);
  if (needed > num_free_blocks())
    return make_error(ErrorCode::out_of_resources, "block manager: need " + std::to_string(needed) +
                                                       " blocks, " + std::to_string(num_free_blocks()) + " free");
  Entry entry;
  entry.num_tokens = num_tokens;
  entry.blocks.reserve(needed);
  for (int64_t i = 0; i < needed; ++i) {
    entry.blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
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
  for (int64_t i = 0; i < extra; ++i) {
    entry.blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  entry.num_tokens = new_total_tokens;
  return Status::success();
}

Status BlockManager::free(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return unknown_seq(seq_id);
  // Return in reverse so the next allocation reuses the most recently freed (cache-warm) blocks.
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b) free_blocks_.push_back(*b);
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
  std::vector<int8_t> owner(num_blocks_, 0);  // 1: free, 2: owned
  for (int32_t b : free_blocks_) {
    if (b < 0 || b >= num_blocks_) return broken("free list holds bad block " + std::to_string(b));
    if (owner[b] != 0) return broken("block " + std::to_string(b) + " is free twice");
    owner[b] = 1;
  }
  for (const auto& [seq_id, entry] : tables_) {
    if (static_cast<int64_t>(entry.blocks.size()) != num_blocks_for(entry.num_tokens))
      return broken("sequence " + std::to_string(seq_id) + " has " + std::to_string(entry.blocks.size()) +
                    " blocks for " + std::to_string(entry.num_tokens) + " tokens");
    for (int32_t b : entry.blocks) {
      if (b < 0 || b >= num_blocks_) return broken("table holds bad block " + std::to_string(b));
      if (owner[b] != 0)
        return broken("block " + std::to_string(b) + (owner[b] == 1 ? " is free and owned" : " is owned twice") +
                      " (sequence " + std::to_string(seq_id) + ")");
      owner[b] = 2;
    }
  }
  for (int64_t b = 0; b < num_blocks_; ++b)
    if (owner[b] == 0) return broken("block " + std::to_string(b) + " is lost");
  return Status::success();
}

}  // namespace troupe
