#pragma once
// The tool side of a chat request: `tools` and `tool_choice` read and checked (errors name the
// field), assistant `tool_calls` and `tool` messages checked, and what follows from them: the
// constraint that forces a call (tool_choice "required" or a named function, by constrained
// decoding, as vLLM does it) and the parser that reads calls back from the output.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "http/text_codec.hpp"
#include "http/tool_parser.hpp"
#include "runtime/result.hpp"
#include "engine/sampling_params.hpp"

namespace troupe::http {

struct ToolChoice {
  enum class Mode { none, auto_, required, named };
  Mode mode = Mode::none;
  std::string name;     // named: the function
  bool given = false;   // the request named a tool_choice (else the OpenAI default)
  bool parallel = true;  // parallel_tool_calls: false allows at most one call (as vLLM)
};

// tools: a list of {"type": "function", "function": {"name", "description"?, "parameters"?,
// "strict"?}}, or null. tool_choice: "none" | "auto" | "required" | {"type": "function",
// "function": {"name"}}; absent: "auto" with tools, else "none" (OpenAI's default).
Result<ToolChoice> read_tool_choice(const nlohmann::json& body, nlohmann::json& tools, std::string& param);

// One message's tool fields: an assistant's tool_calls (a list of {"id"?, "type": "function",
// "function": {"name", "arguments": string or object}}) and a tool message's tool_call_id.
// `name` is "messages[i]" for the error. The message then goes to the template as sent (arguments
// stay OpenAI's JSON string, as transformers passes them; read_messages keeps a null content of
// an assistant message with tool calls, since templates test `content is none`).
Status check_tool_message(const nlohmann::json& message, const std::string& name, std::string& param);

// The JSON schema the output must follow: named -> the function's parameters; required -> an
// array of at least one {"name": one of the tools, "parameters": its parameters} (anyOf over the
// tools; their "$defs" gathered at the top; two tools defining one name differently: an error
// naming tools). None for none and auto.
Result<OutputConstraint> tool_choice_constraint(const ToolChoice& choice, const nlohmann::json& tools,
                                                std::string& param);

// "auto" needs --enable-auto-tool-choice and --tool-call-parser (vLLM's rule): invalid_argument
// naming tool_choice otherwise.
Status check_tool_choice_allowed(const ToolChoice& choice, bool enable_auto_tool_choice,
                                 const std::string& tool_call_parser, std::string& param);

// Both of the above for one request: checks tool_choice against the flags and sets
// params.constraint for "required" and a named function (a constraint already there, from
// response_format or guided decoding, cannot be combined: an error naming tool_choice).
Status apply_tool_choice(const ToolChoice& choice, const nlohmann::json& tools, bool enable_auto_tool_choice,
                         const std::string& tool_call_parser, SamplingParams& params, std::string& param);
// True when constrained decoding writes the calls (required, named): the output is JSON only.
inline bool is_forced(const ToolChoice& choice) {
  return choice.mode == ToolChoice::Mode::required || choice.mode == ToolChoice::Mode::named;
}

// Renders the chat template. Assistant turns of tool calls alone keep content null, as
// transformers passes them (DeepSeek-V3's template needs `content is none` to write the calls);
// a template that raises on that (Qwen3's reads `'</think>' in content`) is rendered again with
// those contents "", as vLLM passes them.
Result<std::string> render_chat_with_tools(const TextCodec& codec, const nlohmann::json& messages,
                                           const nlohmann::json& tools, const ChatRenderOptions& options);

// The parser of this request's output: null for none (and for auto without a configured parser).
std::unique_ptr<ToolParser> tool_parser_for(const ToolChoice& choice, const std::string& tool_call_parser);

}  // namespace troupe::http
