#include "http/hf_text_codec.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace troupe::http {
namespace {

class HfDetokenizer final : public TextDetokenizer {
 public:
  HfDetokenizer(const Tokenizer& tokenizer, const DecodeOptions& options)
      : detokenizer_(tokenizer, options.skip_special_tokens, options.spaces_between_special_tokens) {}
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
  return std::make_unique<HfDetokenizer>(tokenizer_, DecodeOptions{});
}

std::string HfTextCodec::decode_with(const std::vector<int32_t>& ids, const DecodeOptions& options) const {
  return tokenizer_.decode(ids, options.skip_special_tokens, options.spaces_between_special_tokens);
}

std::unique_ptr<TextDetokenizer> HfTextCodec::make_detokenizer_with(const DecodeOptions& options) const {
  return std::make_unique<HfDetokenizer>(tokenizer_, options);
}

Result<std::string> HfTextCodec::render_chat_with(const nlohmann::json& messages, const nlohmann::json& tools,
                                                  const ChatRenderOptions& options) const {
  return chat_template_.render(messages, tools, options);
}

Status HfTextCodec::replace_chat_template(const std::string& file_or_template) {
  // As vLLM: a path that exists is read; anything else is the template itself.
  std::string source = file_or_template;
  std::error_code ec;
  if (std::filesystem::is_regular_file(file_or_template, ec)) {
    std::ifstream in(file_or_template, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) return make_error(ErrorCode::not_found, "--chat-template: cannot read " + file_or_template);
    source = text.str();
  } else if (file_or_template.find("{{") == std::string::npos && file_or_template.find("{%") == std::string::npos) {
    return make_error(ErrorCode::not_found,
                      "--chat-template: " + file_or_template + " is neither a file nor a Jinja template");
  }
  Result<ChatTemplate> parsed = ChatTemplate::parse(source, tokenizer_.bos_token(), tokenizer_.eos_token());
  if (!parsed.ok()) return make_error(parsed.error().code, "--chat-template: " + parsed.error().message);
  chat_template_ = std::move(parsed).value();
  return Status::success();
}

int64_t HfTextCodec::vocab_size() const { return tokenizer_.vocab_size(); }

}  // namespace troupe::http
