#pragma once
// Cache of pre-token -> ids for BpeModel: one open-addressing table over two arenas (key bytes,
// ids), so a hit costs one hash, one probe sequence and one memcmp, and nothing is allocated per
// entry. Cleared whole when full. Not thread-safe: BpeModel guards it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class BpeCache {
 public:
  BpeCache();
  // Appends the cached ids of key to out; false when absent.
  bool find(std::string_view key, std::vector<int32_t>& out) const;
  void insert(std::string_view key, const int32_t* ids, size_t num_ids);
  size_t size() const { return num_entries_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_offset = 0;
    uint32_t key_length = 0;  // 0: empty slot (empty keys are never cached)
    uint32_t ids_offset = 0;
    uint32_t num_ids = 0;
  };
  static uint64_t hash_bytes(std::string_view key);
  void clear();

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t num_entries_ = 0;
  std::string keys_;
  std::vector<int32_t> ids_;
};

}  // namespace troupe
