// Untrusted chat templates: the Jinja lexer, parser and renderer, with the render limits on
// (loop iterations, output size, recursion). The input is the template; it renders against a
// fixed conversation with tools.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "text/chat_template.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json messages = nlohmann::json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4", "tool_calls": [{"type": "function",
      "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}]},
    {"role": "tool", "content": "4"},
    {"role": "user", "content": "ünïcødé 🙂"}])");
  static const nlohmann::json tools = nlohmann::json::parse(R"([{"type": "function", "function": {
    "name": "add", "description": "Adds.", "parameters": {"type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}])");
  const std::string source(reinterpret_cast<const char*>(data), size);
  auto chat_template = troupe::ChatTemplate::parse(source, "<s>", "</s>");
  if (!chat_template.ok()) return 0;
  (void)chat_template->render(messages, true, tools);
  return 0;
}
