#pragma once
// Tool-call parsers: the model's tool-call text -> OpenAI tool calls, one parser per format
// (vLLM's --tool-call-parser names):
//   deepseek_v3   DeepSeek-V3 / R1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
//                 \n```json\n{args}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//   deepseek_v31  DeepSeek-V3.1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{args}
//                 <｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//   hermes        Qwen2.5 / Qwen3: <tool_call>\n{"name": NAME, "arguments": {args}}\n</tool_call>, several
//   llama3_json   Llama-3.1: [<|python_tag|>]{"name": NAME, "parameters": {args}}; {...}
// and two that read the JSON that constrained decoding forces for tool_choice (not flag names):
// the named function's arguments object, and "required"'s [{"name", "parameters"}, ...].
//
// A parser reads the text so far and returns a snapshot (ToolParse). Snapshots of a growing text
// only grow: content and each call's arguments extend what an earlier snapshot held, so a stream
// can send the differences (tool_call_stream). Arguments are the model's raw JSON text.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::http {

struct ParsedToolCall {
  bool has_name = false;  // the name is read whole
  std::string name;
  std::string arguments;  // raw JSON text, as far as it goes
  bool is_complete = false;
};

struct ToolParse {
  std::string content;  // text outside the calls (before them, and any after the last one)
  std::vector<ParsedToolCall> calls;
  // The text cannot be a well-formed tool-call section (bad JSON, markers out of order, or, when
  // final, cut short). malformed_at: where the bad section starts; text before it is accounted
  // for by content and the complete calls.
  bool is_malformed = false;
  size_t malformed_at = 0;
};

class ToolParser {
 public:
  virtual ~ToolParser() = default;
  // is_final: text is all the model wrote (an unfinished call is then malformed). Not final:
  // content leaves out a possible partial start marker; the last call may be unfinished.
  virtual ToolParse parse(std::string_view text, bool is_final) const = 0;

  // The --tool-call-parser names; null for an unknown one.
  static std::unique_ptr<ToolParser> create(const std::string& name);
  static const std::vector<std::string>& known_names();
  // "deepseek_v3, deepseek_v31, hermes, llama3_json" for error messages.
  static std::string known_names_text();
};

std::unique_ptr<ToolParser> make_deepseek_v3_tool_parser();
std::unique_ptr<ToolParser> make_deepseek_v31_tool_parser();
std::unique_ptr<ToolParser> make_hermes_tool_parser();
std::unique_ptr<ToolParser> make_llama3_json_tool_parser();
// tool_choice {"type": "function", "function": {"name": NAME}}: the whole output is the arguments.
std::unique_ptr<ToolParser> make_named_tool_parser(std::string name);
// tool_choice "required": the output is [{"name": NAME, "parameters": {args}}, ...].
std::unique_ptr<ToolParser> make_required_tool_parser();

// A whole output: its calls when every call is well formed, else none and content = text
// (malformed tool text comes back as content). Content that is only space before calls is "".
ToolParse parse_tool_calls(const ToolParser& parser, std::string_view text);

// "chatcmpl-tool-" + 32 random hex digits, as vLLM names calls.
std::string make_tool_call_id();

}  // namespace troupe::http
