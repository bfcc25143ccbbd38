#pragma once
// The model's tokens as byte strings, and a trie of them for token masks.
//
// Built from a Hugging Face tokenizer.json: byte-level BPE token strings map back to bytes
// through GPT-2's byte-to-unicode table; Metaspace / SentencePiece tokens turn '▁' into a space
// and <0xHH> into the byte. Added tokens (special or not) have no bytes: a grammar never allows them
// (EOS aside, which the matcher allows where the grammar may end). Ids past the tokenizer's
// (padding up to the model's vocab_size) have no bytes either.
//
// The trie is flattened in depth-first order: node i covers nodes [i, end) of its subtree, so a
// walk skips a dead subtree by jumping to `end`.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::grammar {

class TokenVocabulary {
 public:
  struct TrieNode {
    uint8_t byte;
    uint16_t depth;  // 1 for a token's first byte
    int32_t end;     // one past this node's subtree
    int32_t tokens_begin, tokens_end;  // ids ending here: sorted_ids()[tokens_begin, tokens_end)
  };

  // vocab_size: the model's (the mask width), >= the tokenizer's ids. eos_ids: ids that end.
  static Result<std::shared_ptr<const TokenVocabulary>> from_tokenizer_json(const std::string& path, int64_t vocab_size,
                                                                            std::vector<int32_t> eos_ids);
  // token_bytes[id]; an empty string is a token no grammar allows (special or padding).
  static std::shared_ptr<const TokenVocabulary> from_bytes(std::vector<std::string> token_bytes,
                                                           std::vector<int32_t> eos_ids);

  int64_t size() const { return int64_t(bytes_.size()); }
  int64_t num_mask_words() const { return (size() + 31) / 32; }
  const std::string& token_bytes(int32_t id) const { return bytes_[id]; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  bool is_eos(int32_t id) const;
  const std::vector<TrieNode>& trie() const { return trie_; }
  const std::vector<int32_t>& sorted_ids() const { return sorted_ids_; }

 private:
  void build_trie();

  std::vector<std::string> bytes_;
  std::vector<int32_t> eos_ids_;
  std::vector<TrieNode> trie_;
  std::vector<int32_t> sorted_ids_;
};

}  // namespace troupe::grammar
