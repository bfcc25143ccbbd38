#include "text/bpe_cache.hpp"

#include <cstring>

namespace troupe {
namespace {

constexpr size_t kNumSlots = size_t{1} << 17;       // at most half used; 3 MB, cache friendly
constexpr size_t kMaxArenaBytes = size_t{64} << 20;  // keys + ids

inline uint64_t load_bytes(const char* p, size_t n) {
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  return v;
}

inline uint64_t mix(uint64_t a, uint64_t b) {
  const __uint128_t product = static_cast<__uint128_t>(a ^ 0xA0761D6478BD642Full) * (b ^ 0xE7037ED1A0B428DBull);
  return static_cast<uint64_t>(product) ^ static_cast<uint64_t>(product >> 64);
}

}  // namespace

BpeCache::BpeCache() : mask_(kNumSlots - 1) {}

uint64_t BpeCache::hash_bytes(std::string_view key) {
  uint64_t h = key.size();
  const char* p = key.data();
  size_t n = key.size();
  while (n >= 16) {
    h = mix(load_bytes(p, 8) ^ h, load_bytes(p + 8, 8));
    p += 16;
    n -= 16;
  }
  if (n >= 8) {
    h = mix(load_bytes(p, 8) ^ h, load_bytes(p + n - 8, 8));
  } else {
    h = mix(load_bytes(p, n) ^ h, n);
  }
  return mix(h, 0x8EBC6AF09C88C6E3ull);
}

bool BpeCache::find(std::string_view key, std::vector<int32_t>& out) const {
  if (slots_.empty()) return false;
  const uint64_t hash = hash_bytes(key);
  for (size_t slot = hash & mask_;; slot = (slot + 1) & mask_) {
    const Slot& s = slots_[slot];
    if (s.key_length == 0) return false;
    if (s.hash == hash && s.key_length == key.size() && std::memcmp(keys_.data() + s.key_offset, key.data(), key.size()) == 0) {
      out.insert(out.end(), ids_.begin() + s.ids_offset, ids_.begin() + s.ids_offset + s.num_ids);
      return true;
    }
  }
}

void BpeCache::insert(std::string_view key, const int32_t* ids, size_t num_ids) {
  if (key.empty()) return;
  if (slots_.empty()) slots_.resize(kNumSlots);  // allocated on first use
  if (num_entries_ + 1 > kNumSlots / 2 || keys_.size() + key.size() + (ids_.size() + num_ids) * 4 > kMaxArenaBytes) clear();
  const uint64_t hash = hash_bytes(key);
  size_t slot = hash & mask_;
  while (slots_[slot].key_length != 0) {
    const Slot& s = slots_[slot];
    if (s.hash == hash && s.key_length == key.size() && std::memcmp(keys_.data() + s.key_offset, key.data(), key.size()) == 0)
      return;  // already there
    slot = (slot + 1) & mask_;
  }
  slots_[slot] = {hash, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(key.size()),
                  static_cast<uint32_t>(ids_.size()), static_cast<uint32_t>(num_ids)};
  keys_.append(key);
  ids_.insert(ids_.end(), ids, ids + num_ids);
  ++num_entries_;
}

void BpeCache::clear() {
  std::fill(slots_.begin(), slots_.end(), Slot{});
  keys_.clear();
  ids_.clear();
  num_entries_ = 0;
}

}  // namespace troupe
