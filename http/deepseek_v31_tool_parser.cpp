// deepseek_v31: DeepSeek-V3.1 tool calls (vLLM's deepseek_v31 parser):
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{args}<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
#include "http/tool_section.hpp"

namespace troupe::http {
namespace {

constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr size_t kMaxName = 256;

CallRead read_call(std::string_view text, size_t pos, bool) {
  CallRead read;
  const size_t sep = text.find(kSep, pos);
  if (sep == std::string_view::npos) {
    std::string_view partial = text.substr(pos);
    if (partial.size() <= kMaxName && partial.find('\n') == std::string_view::npos) read.status = ScanStatus::incomplete;
    return read;
  }
  ParsedToolCall call;
  call.name = std::string(text.substr(pos, sep - pos));
  if (call.name.empty() || call.name.size() > kMaxName || call.name.find('\n') != std::string::npos) return read;
  call.has_name = true;
  return read_arguments_until(text, sep + kSep.size(), kCallEnd, std::move(call));
}

class DeepseekV31ToolParser final : public ToolParser {
 public:
  ToolParse parse(std::string_view text, bool is_final) const override {
    static const MarkerFormat format{kCallsBegin, kCallsEnd, kCallBegin, read_call};
    return parse_marker_section(format, text, is_final);
  }
};

}  // namespace

std::unique_ptr<ToolParser> make_deepseek_v31_tool_parser() { return std::make_unique<DeepseekV31ToolParser>(); }

}  // namespace troupe::http
