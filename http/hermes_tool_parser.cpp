// hermes: Qwen2.5 / Qwen3 (Hermes-style) tool calls, as vLLM's hermes parser reads them:
//   <tool_call>\n{"name": NAME, "arguments": {args}}\n</tool_call>\n<tool_call>...</tool_call>
// The last </tool_call> may be missing when the text ends right after the object.
#include "http/tool_section.hpp"

namespace troupe::http {
namespace {

constexpr std::string_view kCallBegin = "<tool_call>";
constexpr std::string_view kCallEnd = "</tool_call>";

CallRead read_call(std::string_view text, size_t pos, bool is_final) {
  CallRead read;
  const size_t at = skip_json_space(text, pos);
  CallObject object = scan_call_object(text, at, "arguments", "parameters");
  if (object.status == ScanStatus::invalid) return read;
  read.call.has_name = object.has_name;
  read.call.name = object.name;
  if (object.args_begin != std::string_view::npos) {
    size_t args_end = object.args_end == std::string_view::npos ? text.size() : object.args_end;
    read.call.arguments = std::string(text.substr(object.args_begin, args_end - object.args_begin));
  }
  if (object.status == ScanStatus::incomplete) {
    read.status = ScanStatus::incomplete;
    return read;
  }
  if (!object.has_name || object.name.empty()) return read;
  if (object.args_begin == std::string_view::npos) read.call.arguments = "{}";
  const size_t close = skip_json_space(text, object.end);
  if (text.compare(close, kCallEnd.size(), kCallEnd) == 0) {
    read.status = ScanStatus::complete;
    read.end = close + kCallEnd.size();
  } else if (close >= text.size() && is_final) {
    read.status = ScanStatus::complete;  // unclosed last call, as vLLM accepts
    read.end = text.size();
  } else if (!is_final && (close >= text.size() || ends_inside_marker(text, close, kCallEnd))) {
    read.status = ScanStatus::incomplete;
  }
  return read;
}

class HermesToolParser final : public ToolParser {
 public:
  ToolParse parse(std::string_view text, bool is_final) const override {
    static const MarkerFormat format{kCallBegin, "", kCallBegin, read_call};
    return parse_marker_section(format, text, is_final);
  }
};

}  // namespace

std::unique_ptr<ToolParser> make_hermes_tool_parser() { return std::make_unique<HermesToolParser>(); }

}  // namespace troupe::http
