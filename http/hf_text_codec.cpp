#include "http/hf_text_codec.hpp"

#include <nlohmann/json.hpp>

namespace troupe::http {
namespace {

class HfDetokenizer final : public TextDetokenizer {
 public:
  explicit HfDetokenizer(const Tokenizer& tokenizer) : detokenizer_(tokenizer, true) {}
  std::string push(int32_t id) override { return detokenizer_.push(id); }
  std::string flush() override { return detokenizer_.flush(); }

 private:
  IncrementalDetokenizer detokenizer_;
};

}  // namespace

HfTextCodec::HfTextCodec(Tokenizer tokenizer, ChatTemplate chat_template)
    : tokenizer_(std::move(tokenizer)), chat_template_(std::move(chat_template)) {}

Result<std::shared_ptr<HfTextCodec>> HfTextCodec::load(const std::string& model_dir) {
  Result<Tokenizer> tokenizer = Tokenizer::load(model_dir);
  if (!tokenizer.ok()) return tokenizer.error();
  Result<ChatTemplate> chat_template = ChatTemplate::load(model_dir);
  if (!chat_template.ok()) return chat_template.error();
  return std::make_shared<HfTextCodec>(std::move(tokenizer).value(), std::move(chat_template).value());
}

std::vector<int32_t> HfTextCodec::encode(const std::string& text, bool add_special_tokens) const {
  return tokenizer_.encode(text, add_special_tokens);
}

std::string HfTextCodec::decode(const std::vector<int32_t>& ids) const {
  return tokenizer_.decode(ids, /*skip_special_tokens=*/true);
}

Result<std::string> HfTextCodec::render_chat(const nlohmann::json& messages, const nlohmann::json& tools,
                                             bool add_generation_prompt) const {
  return chat_template_.render(messages, add_generation_prompt, tools);
}

std::unique_ptr<TextDetokenizer> HfTextCodec::make_detokenizer() const {
  return std::make_unique<HfDetokenizer>(tokenizer_);
}

int64_t HfTextCodec::vocab_size() const { return tokenizer_.vocab_size(); }

}  // namespace troupe::http
