#pragma once
// One token per byte (id = byte value, vocab 256); chat messages render as "<|role|>content\n"
// and the generation prompt as "<|assistant|>" (+ "<think>\n" when opens_think); an assistant's
// tool calls follow its content as "<call NAME ARGUMENTS>". A message whose content is "RAISE"
// makes the template raise, as a Jinja raise_exception would.
#include <nlohmann/json.hpp>

#include "http/text_codec.hpp"

namespace troupe::testing {

class ByteDetokenizer final : public http::TextDetokenizer {
 public:
  std::string push(int32_t id) override { return std::string(1, char(id)); }
  std::string flush() override { return ""; }
};

class FakeTextCodec final : public http::TextCodec {
 public:
  explicit FakeTextCodec(bool opens_think = false) : opens_think_(opens_think) {}

  std::vector<int32_t> encode(const std::string& text, bool) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(int32_t(c));
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string text;
    for (int32_t id : ids) text += char(id);
    return text;
  }
  Result<std::string> render_chat(const nlohmann::json& messages, const nlohmann::json&,
                                  bool add_generation_prompt) const override {
    std::string text;
    for (const auto& m : messages) {
      std::string content = m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "";
      if (content == "RAISE") return make_error(ErrorCode::invalid_argument, "template raised: roles must alternate");
      text += "<|" + m["role"].get<std::string>() + "|>" + content;
      if (m.contains("tool_calls") && m["tool_calls"].is_array())
        for (const auto& call : m["tool_calls"])
          text += "<call " + call["function"]["name"].get<std::string>() + " " +
                  call["function"]["arguments"].get<std::string>() + ">";
      text += "\n";
    }
    if (add_generation_prompt) text += opens_think_ ? "<|assistant|><think>\n" : "<|assistant|>";
    return text;
  }
  std::unique_ptr<http::TextDetokenizer> make_detokenizer() const override {
    return std::make_unique<ByteDetokenizer>();
  }
  int64_t vocab_size() const override { return 256; }

 private:
  bool opens_think_;
};

}  // namespace troupe::testing
