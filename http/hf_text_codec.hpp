#pragma once
// TextCodec over a Hugging Face tokenizer and the model's chat template.
#include "http/text_codec.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace troupe::http {

class HfTextCodec final : public TextCodec {
 public:
  HfTextCodec(Tokenizer tokenizer, ChatTemplate chat_template);
  // Loads tokenizer.json + tokenizer_config.json (chat template) from a model folder.
  static Result<std::shared_ptr<HfTextCodec>> load(const std::string& model_dir);

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  Result<std::string> render_chat(const nlohmann::json& messages, const nlohmann::json& tools,
                                  bool add_generation_prompt) const override;
  std::unique_ptr<TextDetokenizer> make_detokenizer() const override;
  int64_t vocab_size() const override;
  std::string decode_with(const std::vector<int32_t>& ids, const DecodeOptions& options) const override;
  std::unique_ptr<TextDetokenizer> make_detokenizer_with(const DecodeOptions& options) const override;
  Result<std::string> render_chat_with(const nlohmann::json& messages, const nlohmann::json& tools,
                                       const ChatRenderOptions& options) const override;
  // --chat-template: a Jinja file or the template itself in place of the model's.
  Status replace_chat_template(const std::string& file_or_template);

 private:
  Tokenizer tokenizer_;
  ChatTemplate chat_template_;
};

}  // namespace troupe::http
