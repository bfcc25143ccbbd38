#pragma once
// The parts of a loaded Tokenizer (see tokenizer.hpp); filled by tokenizer_loader.cpp.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/added_tokens.hpp"
#include "text/bpe_model.hpp"
#include "text/normalizer.hpp"
#include "text/pre_tokenizer.hpp"
#include "runtime/result.hpp"
#include "text/token_decoder.hpp"

namespace troupe {

class TokenizerImpl {
 public:
  static Result<std::unique_ptr<TokenizerImpl>> parse(const std::string& tokenizer_json,
                                                      const std::string& tokenizer_config_json);

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;
  // Kept special tokens as separate pieces joined by single spaces (see Tokenizer::decode).
  std::string decode_spaced(const std::vector<int32_t>& ids) const;

  BpeModel model_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  TokenDecoder decoder_;
  AddedTokenMatcher raw_matcher_;         // added tokens with normalized = false
  AddedTokenMatcher normalized_matcher_;  // added tokens with normalized = true (matched after normalizing)
  std::unordered_map<int32_t, AddedToken> added_by_id_;
  TokenMap added_by_content_;
  std::vector<int32_t> prefix_ids_;  // post-processor, single sequence: before / after the text
  std::vector<int32_t> suffix_ids_;
  std::string bos_token_;
  std::string eos_token_;
  int64_t vocab_size_ = 0;

 private:
  void encode_plain(std::string_view text, bool is_first, std::vector<int32_t>& ids, bool use_cache) const;
  void encode_pre_tokenized(std::string_view text, bool is_first, std::vector<int32_t>& ids, bool use_cache) const;
};

}  // namespace troupe
