#pragma once
// A Hugging Face `tokenizer.json` (+ `tokenizer_config.json`): byte-level BPE with the model's own
// pre-tokenizer (Qwen, Llama-3, DeepSeek-V3) and Llama-2 style sentencepiece BPE with byte fallback.
// Encodes exactly as the Hugging Face `tokenizers` library does.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

class TokenizerImpl;

class Tokenizer {
 public:
  // Reads model_dir/tokenizer.json and, when present, model_dir/tokenizer_config.json.
  static Result<Tokenizer> load(const std::string& model_dir);
  static Result<Tokenizer> from_json(const std::string& tokenizer_json, const std::string& tokenizer_config_json);

  Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special_tokens: apply the post-processor (e.g. prepend BOS) as HF's encode() does.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Joins tokens through the decoder. skip_special_tokens drops added tokens marked special.
  // spaces_between_special_tokens (vLLM's request field; it matters only when special tokens are
  // kept): each kept special token is its own piece and the pieces are joined with one space, as
  // transformers' slow decode joins its sub-texts.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false,
                     bool spaces_between_special_tokens = false) const;

  int64_t vocab_size() const;  // including added tokens
  bool is_special(int32_t id) const;
  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  std::string id_to_token(int32_t id) const;          // "" when absent

  // From tokenizer_config.json: "<｜begin▁of▁sentence｜>", ...; "" when not set.
  const std::string& bos_token() const;
  const std::string& eos_token() const;

 private:
  std::unique_ptr<TokenizerImpl> impl_;
};

// Streaming detokenization: push ids one at a time, get the new text they complete. Never emits a
// broken UTF-8 sequence; the concatenation of all outputs (plus flush()) equals decode(all ids).
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens = true,
                         bool spaces_between_special_tokens = false);
  std::string push(int32_t id);
  std::string flush();  // whatever is still held back (invalid tails become U+FFFD as decode does)

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  bool spaces_between_special_tokens_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // ids_[prefix_offset_..read_offset_) give context for the next decode
  size_t read_offset_ = 0;
  size_t emitted_bytes_ = 0;
};

}  // namespace troupe
