#pragma once
// A model's Jinja `chat_template` (tokenizer_config.json), rendered by troupe's own small template
// interpreter (runtime/jinja_*). Output is byte-identical to transformers' apply_chat_template.
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe {

namespace jinja {
class Template;
}

// What a request adds to a render (vLLM's request fields).
struct ChatRenderOptions {
  bool add_generation_prompt = true;
  // End inside the final message, without the tokens that close it (transformers' rule: cut the
  // render after the last occurrence of that message's content); needs !add_generation_prompt.
  bool continue_final_message = false;
  // chat_template_kwargs: an object of extra template variables (e.g. {"enable_thinking": false}),
  // or null. They may not replace `messages`.
  const nlohmann::json* template_kwargs = nullptr;
};

class ChatTemplate {
 public:
  // Reads `chat_template` (a string, or a list of {name, template}: "default" is used) and the
  // bos/eos tokens from model_dir/tokenizer_config.json (or model_dir/chat_template.jinja).
  // A template the interpreter cannot parse is an error here, at load time.
  static Result<ChatTemplate> load(const std::string& model_dir);
  static Result<ChatTemplate> parse(const std::string& source, const std::string& bos_token,
                                    const std::string& eos_token);

  ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  // messages: the OpenAI `messages` array; tools: the `tools` array or null. The template's
  // raise_exception(...) gives ErrorCode::invalid_argument with its message (HTTP 400).
  Result<std::string> render(const nlohmann::json& messages, bool add_generation_prompt,
                             const nlohmann::json& tools) const;
  Result<std::string> render(const nlohmann::json& messages, const nlohmann::json& tools,
                             const ChatRenderOptions& options) const;

 private:
  std::shared_ptr<const jinja::Template> template_;
  std::string bos_token_;
  std::string eos_token_;
};

// transformers' continue_final_message: `rendered` cut right after the last occurrence of the
// final message's content (or of its stripped content); invalid_argument when it is not there.
Result<std::string> cut_after_final_message(const std::string& rendered, const nlohmann::json& messages);

}  // namespace troupe
