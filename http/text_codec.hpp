#pragma once
// The text side of the front door, as http/ sees it: prompt text -> ids, chat messages -> prompt
// text, ids -> text (whole or streamed). HfTextCodec implements it over Tokenizer + ChatTemplate;
// tests use a fake (one token per byte).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"
#include "text/chat_template.hpp"

namespace troupe::http {

// Streaming ids -> text; never splits a UTF-8 sequence (see runtime's IncrementalDetokenizer).
class TextDetokenizer {
 public:
  virtual ~TextDetokenizer() = default;
  virtual std::string push(int32_t id) = 0;
  virtual std::string flush() = 0;
};

// vLLM's per-request detokenization fields.
struct DecodeOptions {
  bool skip_special_tokens = true;
  bool spaces_between_special_tokens = true;  // only matters when special tokens are kept
};

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  // add_special_tokens: prepend BOS etc. as the tokenizer's post-processor does (raw prompts).
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // invalid_argument with the template's message when it raises.
  virtual Result<std::string> render_chat(const nlohmann::json& messages, const nlohmann::json& tools,
                                          bool add_generation_prompt) const = 0;
  virtual std::unique_ptr<TextDetokenizer> make_detokenizer() const = 0;
  virtual int64_t vocab_size() const = 0;

  // The same with a request's options. The defaults serve codecs without special tokens (tests):
  // options that need the tokenizer or the template are ignored; continue_final_message cuts.
  virtual std::string decode_with(const std::vector<int32_t>& ids, const DecodeOptions&) const { return decode(ids); }
  virtual std::unique_ptr<TextDetokenizer> make_detokenizer_with(const DecodeOptions&) const {
    return make_detokenizer();
  }
  virtual Result<std::string> render_chat_with(const nlohmann::json& messages, const nlohmann::json& tools,
                                               const ChatRenderOptions& options) const {
    if (options.continue_final_message && options.add_generation_prompt)
      return make_error(ErrorCode::invalid_argument,
                        "continue_final_message and add_generation_prompt cannot both be true");
    Result<std::string> rendered = render_chat(messages, tools, options.add_generation_prompt);
    if (!rendered.ok() || !options.continue_final_message) return rendered;
    return cut_after_final_message(rendered.value(), messages);
  }
};

}  // namespace troupe::http
