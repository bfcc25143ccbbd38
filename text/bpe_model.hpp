#pragma once
// The BPE model of `tokenizer.json`: vocabulary, merge ranks and the merge loop, with a cache of
// piece -> ids. Byte-level input (GPT-2 style) maps raw bytes to vocabulary characters here.
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/bpe_cache.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct BpeOptions {
  bool byte_level_input = false;  // pieces are raw bytes; vocabulary uses GPT-2's byte characters
  bool byte_fallback = false;     // unknown characters become "<0xNN>" tokens
  bool ignore_merges = false;     // a piece found whole in the vocabulary maps to its id directly
  bool fuse_unk = false;
  std::string unk_token;          // "" when none
};

class BpeModel {
 public:
  // merges: (left, right) token strings in rank order.
  Status init(TokenMap vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);

  // Appends the ids of one pre-token. use_cache: the caller holds the cache (see cache_mutex()).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out, bool use_cache) const;

  int32_t token_to_id(std::string_view token) const;
  const std::string* id_to_token(int32_t id) const;  // nullptr when absent
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }
  const TokenMap& vocab() const { return vocab_; }
  std::mutex& cache_mutex() const { return cache_mutex_; }

 private:
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  void initial_symbols(std::string_view piece, std::vector<Symbol>& symbols) const;
  void merge(std::vector<Symbol>& symbols) const;
  void merge_with_heap(std::vector<Symbol>& symbols) const;
  // (rank, merged id) of a pair, or rank -1.
  std::pair<int32_t, int32_t> lookup_merge(int32_t left, int32_t right) const;

  TokenMap vocab_;
  std::vector<std::string> id_to_token_;
  BpeOptions options_;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];           // byte-level: id of each byte's character; fallback: "<0xNN>"
  std::vector<uint64_t> merge_keys_;  // open addressing: key = left << 32 | right, ~0 = empty
  std::vector<uint64_t> merge_values_;  // rank << 32 | merged id
  uint64_t merge_mask_ = 0;

  mutable std::mutex cache_mutex_;  // held by the encode that uses cache_
  mutable BpeCache cache_;
};

}  // namespace troupe
