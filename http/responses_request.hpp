#pragma once
// Parsing and validation of `POST /v1/responses` (OpenAI's Responses API, text in and out).
// The body becomes the same OpenAIRequest the chat path runs: `instructions` a system message,
// `input` (a string, or message items whose content is a string or input_text / output_text
// parts) the chat messages, `max_output_tokens` max_tokens, `text.format` json_object /
// json_schema the output constraint. Every bad field gives invalid_argument naming the field
// (`param`). `previous_response_id` names a response the route continues (its bounded in-memory
// store, response_store). Function tools ({type: function, name, description?, parameters?,
// strict?}), tool_choice and parallel_tool_calls become the chat route's; function_call and
// function_call_output input items become the assistant's tool calls and the tool messages.
// Refused with a clear error: other tools, images and files, conversation and prompt references,
// background. Known fields without effect here (reasoning, include,
// truncation, ...) and unknown ones are accepted and listed in `ignored_fields`, which the route
// logs once, as vLLM does.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/openai_request.hpp"
#include "runtime/model_config.hpp"
#include "runtime/result.hpp"

namespace troupe::http {

struct ResponsesRequest {
  OpenAIRequest chat;            // messages, sampling params, stream: what the chat path runs
  nlohmann::json input_messages; // the input alone as chat messages (chat.messages less instructions)
  std::string previous_response_id;  // "" when none
  nlohmann::json instructions;   // string or null, echoed in the response
  nlohmann::json metadata;       // object (may be empty), echoed
  nlohmann::json user;           // string or null, echoed
  nlohmann::json text_format;    // {"type": "text"} or the format given, echoed
  nlohmann::json reasoning;      // {"effort", "summary"}, echoed
  bool store = true;             // OpenAI's default: kept for a later previous_response_id
  nlohmann::json tools;          // the function tools as given (echoed); chat.tools holds them in chat form
  nlohmann::json tool_choice;    // as given, or auto (with tools) / none; echoed
  bool parallel_tool_calls = true;
  std::vector<std::string> ignored_fields;
};

// `defaults`: the model's generation_config.json sampling defaults, as for chat.
Result<ResponsesRequest> parse_responses_request(const nlohmann::json& body, std::string& param,
                                                 const GenerationDefaults& defaults = {});

}  // namespace troupe::http
