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

 private:
  std::shared_ptr<const jinja::Template> template_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace troupe
