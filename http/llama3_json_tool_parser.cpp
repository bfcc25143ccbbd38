// llama3_json: Llama-3.1's JSON tool calls, as vLLM's llama3_json parser reads them: the whole
// output is [<|python_tag|>]{"name": NAME, "parameters": {args}} with more objects after "; ".
// An output that does not start with '{' (or the tag) is plain content.
#include "http/json_scan.hpp"
#include "http/tool_parser.hpp"

namespace troupe::http {
namespace {

constexpr std::string_view kPythonTag = "<|python_tag|>";

class Llama3JsonToolParser final : public ToolParser {
 public:
  ToolParse parse(std::string_view text, bool is_final) const override {
    ToolParse parse;
    size_t pos = skip_json_space(text, 0);
    if (text.compare(pos, kPythonTag.size(), kPythonTag) == 0) {
      pos = skip_json_space(text, pos + kPythonTag.size());
    } else if (!is_final && ends_inside_marker(text, pos, kPythonTag)) {
      return parse;  // the tag may be arriving
    }
    if (pos >= text.size()) {
      if (is_final) parse.content = std::string(text);
      return parse;  // only space so far: undecided
    }
    if (text[pos] != '{') {
      parse.content = std::string(text);
      return parse;
    }
    auto malformed = [&] {
      parse.is_malformed = true;
      parse.malformed_at = 0;
      return parse;
    };
    while (true) {
      CallObject object = scan_call_object(text, pos, "parameters", "arguments");
      if (object.status == ScanStatus::invalid) return malformed();
      ParsedToolCall call;
      call.has_name = object.has_name;
      call.name = object.name;
      if (object.args_begin != std::string_view::npos) {
        size_t args_end = object.args_end == std::string_view::npos ? text.size() : object.args_end;
        call.arguments = std::string(text.substr(object.args_begin, args_end - object.args_begin));
      }
      if (object.status == ScanStatus::incomplete) {
        if (is_final) return malformed();
        parse.calls.push_back(std::move(call));
        return parse;
      }
      if (!object.has_name || object.name.empty()) return malformed();
      if (object.args_begin == std::string_view::npos) call.arguments = "{}";
      call.is_complete = true;
      parse.calls.push_back(std::move(call));
      pos = skip_json_space(text, object.end);
      if (pos >= text.size()) return parse;
      if (text[pos] != ';') return malformed();
      pos = skip_json_space(text, pos + 1);
      if (pos >= text.size()) return parse;  // a trailing ';'
    }
  }
};

}  // namespace

std::unique_ptr<ToolParser> make_llama3_json_tool_parser() { return std::make_unique<Llama3JsonToolParser>(); }

}  // namespace troupe::http
