#pragma once
// Response objects and streaming events of `POST /v1/responses` (OpenAI's Responses API, text).
//
// A response's output: a reasoning item (rs_...) when the reasoning parser found reasoning, then
// one message item (msg_...) with one output_text part (left out when the model only called
// tools), then one function_call item (fc_...) per tool call. Status: completed; incomplete
// (incomplete_details.reason "max_output_tokens") when the token budget or the context ended it;
// cancelled when the server aborted it (drain); failed with an error.
//
// A stream is SSE with named events (`event: <type>` + `data: <json>`), each with a
// sequence_number from 0, in OpenAI's order:
//   response.created, response.in_progress,
//   [reasoning]  response.output_item.added, response.content_part.added (reasoning_text),
//                response.reasoning_text.delta..., response.reasoning_text.done,
//                response.content_part.done, response.output_item.done,
//   [message]    response.output_item.added, response.content_part.added (output_text),
//                response.output_text.delta..., response.output_text.done,
//                response.content_part.done, response.output_item.done,
//   [per call]   response.output_item.added (function_call), response.function_call_arguments.delta...,
//                response.function_call_arguments.done, response.output_item.done,
//   response.completed | response.incomplete
// or, on a failure, `error` then response.failed. No `data: [DONE]` (OpenAI sends none).
#include <cstdint>
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

#include "http/choice_stream.hpp"
#include "http/responses_request.hpp"

namespace troupe::http {

// What every response object of one request repeats: its id and the request's echoed fields.
struct ResponseSkeleton {
  std::string id;  // "resp_<hex>"
  int64_t created_at = 0;
  std::string model;
  nlohmann::json instructions, metadata, user, text_format, reasoning;
  nlohmann::json max_output_tokens;  // integer or null
  nlohmann::json previous_response_id;  // string or null
  bool store = false;
  double temperature = 1.0, top_p = 1.0;
  nlohmann::json tools = nlohmann::json::array(), tool_choice = "none";
  bool parallel_tool_calls = true;

  static ResponseSkeleton of(const ResponsesRequest& request, std::string id, int64_t created_at, std::string model);
  // "rs_<hex>" / "msg_<hex>": the response id's digits under another prefix.
  std::string item_id(const char* prefix) const;
};

// "completed", "incomplete" (length), "cancelled" (abort), "failed" (error); "in_progress" (none).
const char* response_status_of(FinishReason reason);

nlohmann::json responses_usage_json(int64_t num_input_tokens, int64_t num_output_tokens,
                                    int64_t num_reasoning_tokens, int64_t num_cached_tokens = 0);
nlohmann::json reasoning_item_json(const std::string& id, const std::string& text, const char* status);
nlohmann::json message_item_json(const std::string& id, const std::string& text, const char* status);
nlohmann::json function_call_item_json(const std::string& id, const ToolCall& call, const char* status);

// A response object; `error` null unless failed.
nlohmann::json response_json(const ResponseSkeleton& skeleton, FinishReason reason, const nlohmann::json& output,
                             const nlohmann::json& usage, const nlohmann::json& error = nullptr);
// The whole (non-streaming) response of one finished choice.
nlohmann::json response_of(const ResponseSkeleton& skeleton, const ChoiceStream& choice, const nlohmann::json& usage);

// The events of one streamed response, built from the choice's deltas in order.
class ResponseEventStream {
 public:
  explicit ResponseEventStream(ResponseSkeleton skeleton);

  // response.created and response.in_progress.
  std::string start();
  // Opens items as text arrives and sends its deltas; a delta's finish reason is not acted on.
  std::string push(const ChoiceDelta& delta);
  // Closes the open items and sends response.completed, .incomplete (length) or a cancelled one.
  std::string finish(FinishReason reason, const nlohmann::json& usage);
  // An `error` event, then response.failed with the same error.
  std::string fail(const std::string& code, const std::string& message, const nlohmann::json& usage);

  int64_t num_events() const { return sequence_number_; }
  const std::string& reasoning() const { return reasoning_; }
  const std::string& content() const { return content_; }
  const std::vector<ToolCall>& tool_calls() const { return calls_; }

 private:
  std::string event(nlohmann::json body);
  std::string events(std::initializer_list<nlohmann::json> bodies);
  std::string open_reasoning();
  std::string close_reasoning();
  std::string open_message();
  std::string close_message(const char* status);
  std::string push_tool_call(const ToolCallDelta& delta);
  std::string close_call();
  std::string call_item_id(size_t index) const;
  nlohmann::json output(const char* message_status) const;

  ResponseSkeleton skeleton_;
  std::string reasoning_id_, message_id_;
  int64_t sequence_number_ = 0;
  int output_index_ = -1;  // of the item open now
  bool reasoning_open_ = false, reasoning_done_ = false;
  bool message_open_ = false, message_done_ = false;
  std::string reasoning_, content_;
  std::vector<ToolCall> calls_;          // sent so far; the last is open while call_open_
  std::vector<int> call_output_index_;   // [calls_]
  bool call_open_ = false;
};

}  // namespace troupe::http
