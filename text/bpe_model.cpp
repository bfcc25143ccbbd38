#include "text/bpe_model.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <functional>

#include "text/byte_level.hpp"
#include "text/utf8.hpp"

namespace troupe {
namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};
constexpr size_t kMaxCachedPieceBytes = 1024;
constexpr size_t kHeapThreshold = 64;  // words with more symbols use the priority queue

inline uint64_t mix(uint64_t key) {
  key ^= key >> 31;
  key *= 0x9E3779B97F4A7C15ull;
  return key ^ (key >> 29);
}

}  // namespace

Status BpeModel::init(TokenMap vocab, const std::vector<std::pair<std::string, std::string>>& merges,
                      BpeOptions options) {
  vocab_ = std::move(vocab);
  options_ = std::move(options);
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab_) {
    if (id < 0) return make_error(ErrorCode::corrupt_data, "tokenizer.json: model.vocab has negative id for '" + token + "'");
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [token, id] : vocab_) id_to_token_[static_cast<size_t>(id)] = token;
  unk_id_ = options_.unk_token.empty() ? -1 : token_to_id(options_.unk_token);

  const ByteLevelTable& table = ByteLevelTable::get();
  for (int b = 0; b < 256; ++b) {
    if (options_.byte_level_input) {
      byte_ids_[b] = token_to_id(table.char_of(static_cast<unsigned char>(b)));
    } else {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      byte_ids_[b] = token_to_id(name);
    }
  }

  size_t capacity = 16;
  while (capacity < merges.size() * 2) capacity *= 2;
  merge_keys_.assign(capacity, kEmptyKey);
  merge_values_.assign(capacity, 0);
  merge_mask_ = capacity - 1;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const int32_t a = token_to_id(left), b = token_to_id(right), merged = token_to_id(left + right);
    if (a < 0 || b < 0 || merged < 0) {
      return make_error(ErrorCode::corrupt_data, "tokenizer.json: merge '" + left + " " + right + "' (rank " +
                                                     std::to_string(rank) + ") uses a token missing from model.vocab");
    }
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    uint64_t slot = mix(key) & merge_mask_;
    while (merge_keys_[slot] != kEmptyKey && merge_keys_[slot] != key) slot = (slot + 1) & merge_mask_;
    merge_keys_[slot] = key;  // a repeated pair keeps its last rank, as the `tokenizers` HashMap does
    merge_values_[slot] = (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(merged);
  }
  return Status::success();
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return nullptr;
  return &id_to_token_[static_cast<size_t>(id)];
}

std::pair<int32_t, int32_t> BpeModel::lookup_merge(int32_t left, int32_t right) const {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  uint64_t slot = mix(key) & merge_mask_;
  while (true) {
    const uint64_t k = merge_keys_[slot];
    if (k == key) {
      const uint64_t v = merge_values_[slot];
      return {static_cast<int32_t>(v >> 32), static_cast<int32_t>(v & 0xFFFFFFFFu)};
    }
    if (k == kEmptyKey) return {-1, -1};
    slot = (slot + 1) & merge_mask_;
  }
}

void BpeModel::initial_symbols(std::string_view piece, std::vector<Symbol>& symbols) const {
  const auto push = [&](int32_t id) { symbols.push_back({id, static_cast<int32_t>(symbols.size()) - 1, -1}); };
  const auto push_unknown = [&]() {
    if (unk_id_ < 0) return;  // no unk token: the character is dropped, as `tokenizers` does
    if (options_.fuse_unk && !symbols.empty() && symbols.back().id == unk_id_) return;
    push(unk_id_);
  };
  if (options_.byte_level_input) {
    for (unsigned char b : piece) {
      if (byte_ids_[b] >= 0) {
        push(byte_ids_[b]);
      } else {
        push_unknown();
      }
    }
    return;
  }
  size_t pos = 0;
  while (pos < piece.size()) {
    const size_t length = std::min(utf8::sequence_length(static_cast<unsigned char>(piece[pos])), piece.size() - pos);
    const std::string_view ch = piece.substr(pos, length);
    pos += length;
    const int32_t id = token_to_id(ch);
    if (id >= 0) {
      push(id);
      continue;
    }
    bool all_bytes = options_.byte_fallback;
    for (unsigned char b : ch) all_bytes = all_bytes && byte_ids_[b] >= 0;
    if (all_bytes) {
      for (unsigned char b : ch) push(byte_ids_[b]);
    } else {
      push_unknown();
    }
  }
}

void BpeModel::merge(std::vector<Symbol>& symbols) const {
  const size_t n = symbols.size();
  if (n < 2) return;
  if (n > kHeapThreshold) {
    merge_with_heap(symbols);
    return;
  }
  // Small words: keep the rank of every adjacent pair and merge the lowest, leftmost first.
  int32_t ids[kHeapThreshold];
  int32_t ranks[kHeapThreshold];  // ranks[i]: pair (i, i+1); INT_MAX when not mergeable
  std::fill(std::begin(ranks), std::end(ranks), INT_MAX);
  int32_t merged_ids[kHeapThreshold];
  size_t count = n;
  for (size_t i = 0; i < n; ++i) ids[i] = symbols[i].id;
  const auto score = [&](size_t i) {
    const auto [rank, merged] = lookup_merge(ids[i], ids[i + 1]);
    ranks[i] = rank < 0 ? INT_MAX : rank;
    merged_ids[i] = merged;
  };
  for (size_t i = 0; i + 1 < count; ++i) score(i);
  while (count > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < count; ++i)
      if (ranks[i] < ranks[best]) best = i;
    if (ranks[best] == INT_MAX) break;
    ids[best] = merged_ids[best];
    for (size_t i = best + 1; i + 1 < count; ++i) {
      ids[i] = ids[i + 1];
      ranks[i] = ranks[i + 1];
      merged_ids[i] = merged_ids[i + 1];
    }
    --count;
    if (best + 1 < count) score(best);
    if (best > 0) score(best - 1);
  }
  symbols.resize(count);
  for (size_t i = 0; i < count; ++i) symbols[i].id = ids[i];
}

void BpeModel::merge_with_heap(std::vector<Symbol>& symbols) const {
  // Min-heap on (rank, left position); each entry remembers the pair it was made for, so a stale
  // one (a side already merged away) is recognised without another lookup.
  struct Entry {
    uint64_t order;  // rank << 32 | left position
    uint64_t pair;   // left id << 32 | right id
    int32_t merged;
  };
  const auto later = [](const Entry& a, const Entry& b) { return a.order > b.order; };
  thread_local std::vector<Entry> heap;
  heap.clear();
  const auto n = static_cast<int32_t>(symbols.size());
  for (int32_t i = 0; i < n; ++i) symbols[i].next = i + 1 < n ? i + 1 : -1;
  const auto pair_key = [](int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  };
  const auto push_pair = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const auto [rank, merged] = lookup_merge(symbols[left].id, symbols[right].id);
    if (rank < 0) return;
    heap.push_back({(static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(left),
                    pair_key(symbols[left].id, symbols[right].id), merged});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Entry top = heap.back();
    heap.pop_back();
    const auto left = static_cast<int32_t>(top.order & 0xFFFFFFFFu);
    Symbol& l = symbols[left];
    if (l.id < 0 || l.next < 0 || pair_key(l.id, symbols[l.next].id) != top.pair) continue;  // stale
    Symbol& r = symbols[l.next];
    l.id = top.merged;
    r.id = -1;  // removed
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = left;
    if (l.prev >= 0) push_pair(l.prev);
    push_pair(left);
  }
  size_t out = 0;
  for (const Symbol& s : symbols)
    if (s.id >= 0) symbols[out++] = s;
  symbols.resize(out);
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out, bool use_cache) const {
  if (piece.empty()) return;
  use_cache = use_cache && piece.size() <= kMaxCachedPieceBytes;
  if (use_cache) {
    if (cache_.find(piece, out)) return;
  }
  const size_t start = out.size();
  bool done = false;
  if (options_.ignore_merges) {
    int32_t id = -1;
    if (options_.byte_level_input) {
      thread_local std::string mapped;
      mapped.clear();
      ByteLevelTable::get().encode(piece, mapped);
      id = token_to_id(mapped);
    } else {
      id = token_to_id(piece);
    }
    if (id >= 0) {
      out.push_back(id);
      done = true;
    }
  }
  if (!done) {
    thread_local std::vector<Symbol> symbols;
    symbols.clear();
    initial_symbols(piece, symbols);
    merge(symbols);
    for (const Symbol& s : symbols) out.push_back(s.id);
  }
  if (use_cache) {
    cache_.insert(piece, out.data() + start, out.size() - start);
  }
}

}  // namespace troupe
