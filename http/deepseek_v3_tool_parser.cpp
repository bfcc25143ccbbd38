// deepseek_v3: DeepSeek-V3 and R1 tool calls, as their chat template renders them and vLLM's
// deepseek_v3 parser reads them:
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{args}\n```<｜tool▁call▁end｜>
//   \n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜>
// The closing <｜tool▁calls▁end｜> may be missing (the template leaves it out after a single call).
#include "http/tool_section.hpp"

namespace troupe::http {
namespace {

constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kArgsBegin = "\n```json\n";
constexpr std::string_view kArgsEnd = "\n```<｜tool▁call▁end｜>";
constexpr size_t kMaxHeader = 256;  // type or name longer than this: not a call

CallRead read_call(std::string_view text, size_t pos, bool) {
  CallRead read;
  const size_t sep = text.find(kSep, pos);
  if (sep == std::string_view::npos) {
    if (text.size() - pos <= kMaxHeader) read.status = ScanStatus::incomplete;
    return read;
  }
  if (sep == pos || text.substr(pos, sep - pos).find('\n') != std::string_view::npos) return read;
  const size_t name_begin = sep + kSep.size();
  const size_t args_begin = text.find(kArgsBegin, name_begin);
  if (args_begin == std::string_view::npos) {
    std::string_view partial = text.substr(name_begin);
    size_t newline = partial.find('\n');
    if (partial.size() <= kMaxHeader && (newline == std::string_view::npos || ends_inside_marker(partial, newline, kArgsBegin)))
      read.status = ScanStatus::incomplete;
    return read;
  }
  ParsedToolCall call;
  call.name = std::string(text.substr(name_begin, args_begin - name_begin));
  if (call.name.empty() || call.name.size() > kMaxHeader || call.name.find('\n') != std::string::npos) return read;
  call.has_name = true;
  return read_arguments_until(text, args_begin + kArgsBegin.size(), kArgsEnd, std::move(call));
}

class DeepseekV3ToolParser final : public ToolParser {
 public:
  ToolParse parse(std::string_view text, bool is_final) const override {
    static const MarkerFormat format{kCallsBegin, kCallsEnd, kCallBegin, read_call};
    return parse_marker_section(format, text, is_final);
  }
};

}  // namespace

std::unique_ptr<ToolParser> make_deepseek_v3_tool_parser() { return std::make_unique<DeepseekV3ToolParser>(); }

}  // namespace troupe::http
