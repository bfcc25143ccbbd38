// Model output through every tool-call parser, whole and streamed (split where the input says):
// never a crash or a hang; a whole parse's calls have names and JSON-object arguments; a stream
// that sent no call gives back exactly the text as content.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "http/json_scan.hpp"
#include "http/tool_call_stream.hpp"
#include "http/tool_parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace troupe::http;
  if (size < 1) return 0;
  const size_t step = 1 + data[0] % 16;  // the stream's piece size
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::unique_ptr<ToolParser>> parsers;
  for (const std::string& name : ToolParser::known_names()) parsers.push_back(ToolParser::create(name));
  parsers.push_back(make_named_tool_parser("f"));
  parsers.push_back(make_required_tool_parser());
  for (const auto& parser : parsers) {
    ToolParse whole = parse_tool_calls(*parser, text);
    for (const ParsedToolCall& call : whole.calls)
      if (call.name.empty() || !is_json_object(call.arguments)) std::abort();
    if (whole.calls.empty() && whole.content != text) std::abort();
  }
  for (const std::string& name : ToolParser::known_names()) {
    ToolCallStream stream(ToolParser::create(name));
    std::string content;
    int calls = 0;
    for (size_t at = 0; at < text.size(); at += step) {
      ToolStreamDelta d = stream.push(text.substr(at, step));
      content += d.content;
      calls += int(d.tool_calls.size());
    }
    ToolStreamDelta d = stream.finish();
    content += d.content;
    calls += int(d.tool_calls.size());
    if (calls == 0 && content != text) std::abort();
  }
  return 0;
}
