#include "http/response_store.hpp"

namespace troupe::http {

ResponseStore::ResponseStore(size_t max_entries, size_t max_bytes) : max_entries_(max_entries), max_bytes_(max_bytes) {}

void ResponseStore::put(const std::string& id, nlohmann::json conversation) {
  const size_t size = id.size() + conversation.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size();
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = by_id_.find(id); it != by_id_.end()) {
    num_bytes_ -= it->second->num_bytes;
    entries_.erase(it->second);
    by_id_.erase(it);
  }
  if (size > max_bytes_ || max_entries_ == 0) return;
  entries_.push_front(Entry{id, std::move(conversation), size});
  by_id_[id] = entries_.begin();
  num_bytes_ += size;
  evict_locked();
}

std::optional<nlohmann::json> ResponseStore::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  entries_.splice(entries_.begin(), entries_, it->second);
  return it->second->conversation;
}

void ResponseStore::evict_locked() {
  while (!entries_.empty() && (entries_.size() > max_entries_ || num_bytes_ > max_bytes_)) {
    num_bytes_ -= entries_.back().num_bytes;
    by_id_.erase(entries_.back().id);
    entries_.pop_back();
  }
}

size_t ResponseStore::num_entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

size_t ResponseStore::num_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return num_bytes_;
}

}  // namespace troupe::http
