#pragma once
// A bounded in-memory store of finished responses, for `previous_response_id`: each entry is the
// conversation a follow-up continues (the earlier turns' messages, this response's input and its
// answer as an assistant message; reasoning is not kept, as vLLM drops it). The least recently
// used entries go first once more than max_entries or max_bytes (of their JSON text) are held.
// Nothing survives a restart. Thread-safe.
#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace troupe::http {

class ResponseStore {
 public:
  explicit ResponseStore(size_t max_entries = 4096, size_t max_bytes = size_t(64) << 20);

  // An entry larger than max_bytes is not kept.
  void put(const std::string& id, nlohmann::json conversation);
  // The conversation, and the entry becomes the most recently used; nullopt when unknown or evicted.
  std::optional<nlohmann::json> get(const std::string& id);

  size_t num_entries() const;
  size_t num_bytes() const;

 private:
  struct Entry {
    std::string id;
    nlohmann::json conversation;
    size_t num_bytes = 0;
  };
  void evict_locked();

  const size_t max_entries_, max_bytes_;
  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> by_id_;
  size_t num_bytes_ = 0;
};

}  // namespace troupe::http
