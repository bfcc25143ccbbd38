#include "http/tool_parser.hpp"

#include <cstdio>
#include <random>

#include "http/json_scan.hpp"

namespace troupe::http {

const std::vector<std::string>& ToolParser::known_names() {
  static const std::vector<std::string> names = {"deepseek_v3", "deepseek_v31", "hermes", "llama3_json"};
  return names;
}

std::string ToolParser::known_names_text() {
  std::string text;
  for (const std::string& name : known_names()) text += (text.empty() ? "" : ", ") + name;
  return text;
}

std::unique_ptr<ToolParser> ToolParser::create(const std::string& name) {
  if (name == "deepseek_v3") return make_deepseek_v3_tool_parser();
  if (name == "deepseek_v31") return make_deepseek_v31_tool_parser();
  if (name == "hermes") return make_hermes_tool_parser();
  if (name == "llama3_json") return make_llama3_json_tool_parser();
  return nullptr;
}

ToolParse parse_tool_calls(const ToolParser& parser, std::string_view text) {
  ToolParse parse = parser.parse(text, /*is_final=*/true);
  bool all_complete = !parse.calls.empty();
  // NOTE: the scanners check structure; nlohmann also refuses invalid UTF-8 inside strings.
  for (const ParsedToolCall& call : parse.calls)
    all_complete = all_complete && call.is_complete && call.has_name && is_json_object(call.arguments);
  if (parse.is_malformed || !all_complete) {
    ToolParse plain;
    plain.content = std::string(text);
    return plain;
  }
  if (parse.content.find_first_not_of(" \t\r\n") == std::string::npos) parse.content.clear();
  return parse;
}

std::string make_tool_call_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[48];
  std::snprintf(buf, sizeof(buf), "chatcmpl-tool-%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

}  // namespace troupe::http
