// The parsers of tool_choice "required" and a named function. Constrained decoding makes the
// model write JSON (vLLM's shapes): for a named function its arguments object, for "required" an
// array [{"name": NAME, "parameters": {args}}, ...] of at least one call.
#include "http/json_scan.hpp"
#include "http/tool_parser.hpp"

namespace troupe::http {
namespace {

ToolParse malformed(ToolParse parse, size_t at) {
  parse.is_malformed = true;
  parse.malformed_at = at;
  return parse;
}

class NamedToolParser final : public ToolParser {
 public:
  explicit NamedToolParser(std::string name) : name_(std::move(name)) {}

  ToolParse parse(std::string_view text, bool is_final) const override {
    ToolParse parse;
    ParsedToolCall call;
    call.has_name = true;
    call.name = name_;
    const size_t pos = skip_json_space(text, 0);
    if (pos < text.size() && text[pos] != '{') return malformed(parse, 0);
    ScanResult value = scan_json_value(text, pos);
    if (value.status == ScanStatus::invalid) return malformed(parse, 0);
    if (value.status == ScanStatus::incomplete) {
      if (is_final) return malformed(parse, 0);
      call.arguments = std::string(text.substr(pos));
      parse.calls.push_back(std::move(call));
      return parse;
    }
    if (skip_json_space(text, value.end) < text.size()) return malformed(parse, 0);
    call.arguments = std::string(text.substr(pos, value.end - pos));
    call.is_complete = true;
    parse.calls.push_back(std::move(call));
    return parse;
  }

 private:
  std::string name_;
};

class RequiredToolParser final : public ToolParser {
 public:
  ToolParse parse(std::string_view text, bool is_final) const override {
    ToolParse parse;
    size_t pos = skip_json_space(text, 0);
    if (pos >= text.size()) return is_final ? malformed(parse, 0) : parse;
    if (text[pos] != '[') return malformed(parse, 0);
    pos = skip_json_space(text, pos + 1);
    while (true) {
      if (pos >= text.size()) return is_final ? malformed(parse, 0) : parse;
      CallObject object = scan_call_object(text, pos, "parameters", "arguments");
      if (object.status == ScanStatus::invalid) return malformed(parse, 0);
      ParsedToolCall call;
      call.has_name = object.has_name;
      call.name = object.name;
      if (object.args_begin != std::string_view::npos) {
        size_t args_end = object.args_end == std::string_view::npos ? text.size() : object.args_end;
        call.arguments = std::string(text.substr(object.args_begin, args_end - object.args_begin));
      }
      if (object.status == ScanStatus::incomplete) {
        if (is_final) return malformed(parse, 0);
        parse.calls.push_back(std::move(call));
        return parse;
      }
      if (!object.has_name || object.name.empty()) return malformed(parse, 0);
      if (object.args_begin == std::string_view::npos) call.arguments = "{}";
      call.is_complete = true;
      parse.calls.push_back(std::move(call));
      pos = skip_json_space(text, object.end);
      if (pos >= text.size()) return is_final ? malformed(parse, 0) : parse;
      if (text[pos] == ']') {
        if (skip_json_space(text, pos + 1) < text.size()) return malformed(parse, 0);
        return parse;
      }
      if (text[pos] != ',') return malformed(parse, 0);
      pos = skip_json_space(text, pos + 1);
    }
  }
};

}  // namespace

std::unique_ptr<ToolParser> make_named_tool_parser(std::string name) {
  return std::make_unique<NamedToolParser>(std::move(name));
}

std::unique_ptr<ToolParser> make_required_tool_parser() { return std::make_unique<RequiredToolParser>(); }

}  // namespace troupe::http
