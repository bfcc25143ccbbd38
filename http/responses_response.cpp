#include "http/responses_response.hpp"

#include "http/openai_response.hpp"

namespace troupe::http {

using nlohmann::json;

ResponseSkeleton ResponseSkeleton::of(const ResponsesRequest& request, std::string id, int64_t created_at,
                                      std::string model) {
  ResponseSkeleton s;
  s.id = std::move(id);
  s.created_at = created_at;
  s.model = std::move(model);
  s.instructions = request.instructions;
  s.metadata = request.metadata.is_object() ? request.metadata : json::object();
  s.user = request.user;
  s.text_format = request.text_format.is_object() ? request.text_format : json{{"type", "text"}};
  s.reasoning = request.reasoning.is_object() ? request.reasoning : json{{"effort", nullptr}, {"summary", nullptr}};
  s.max_output_tokens = request.chat.max_tokens_given ? json(request.chat.params.max_tokens) : json(nullptr);
  s.previous_response_id =
      request.previous_response_id.empty() ? json(nullptr) : json(request.previous_response_id);
  s.store = request.store;
  s.temperature = request.chat.params.temperature;
  s.top_p = request.chat.params.top_p;
  s.tools = request.tools.is_array() ? request.tools : json::array();
  s.tool_choice = request.tool_choice.is_null() ? json("none") : request.tool_choice;
  s.parallel_tool_calls = request.parallel_tool_calls;
  return s;
}

std::string ResponseSkeleton::item_id(const char* prefix) const {
  const size_t underscore = id.find('_');
  return prefix + (underscore == std::string::npos ? id : id.substr(underscore));
}

const char* response_status_of(FinishReason reason) {
  switch (reason) {
    case FinishReason::none: return "in_progress";
    case FinishReason::stop: return "completed";
    case FinishReason::length: return "incomplete";
    case FinishReason::abort: return "cancelled";
    case FinishReason::error: return "failed";
  }
  return "failed";
}

json responses_usage_json(int64_t num_input_tokens, int64_t num_output_tokens, int64_t num_reasoning_tokens,
                          int64_t num_cached_tokens) {
  return json{{"input_tokens", num_input_tokens},
              {"input_tokens_details", {{"cached_tokens", num_cached_tokens}}},
              {"output_tokens", num_output_tokens},
              {"output_tokens_details", {{"reasoning_tokens", num_reasoning_tokens}}},
              {"total_tokens", num_input_tokens + num_output_tokens}};
}

json reasoning_item_json(const std::string& id, const std::string& text, const char* status) {
  json content = json::array();
  if (!text.empty() || std::string(status) != "in_progress")
    content.push_back(json{{"type", "reasoning_text"}, {"text", text}});
  return json{{"id", id}, {"type", "reasoning"}, {"summary", json::array()}, {"content", content},
              {"encrypted_content", nullptr}, {"status", status}};
}

json message_item_json(const std::string& id, const std::string& text, const char* status) {
  json content = json::array();
  if (std::string(status) != "in_progress")
    content.push_back(json{{"type", "output_text"}, {"text", text}, {"annotations", json::array()}});
  return json{{"id", id}, {"type", "message"}, {"role", "assistant"}, {"status", status}, {"content", content}};
}

json function_call_item_json(const std::string& id, const ToolCall& call, const char* status) {
  return json{{"id", id},           {"type", "function_call"},      {"call_id", call.id},
              {"name", call.name}, {"arguments", call.arguments}, {"status", status}};
}

json response_json(const ResponseSkeleton& s, FinishReason reason, const json& output, const json& usage,
                   const json& error) {
  json incomplete = nullptr;
  if (reason == FinishReason::length) incomplete = json{{"reason", "max_output_tokens"}};
  return json{{"id", s.id},
              {"object", "response"},
              {"created_at", s.created_at},
              {"status", response_status_of(reason)},
              {"error", error},
              {"incomplete_details", incomplete},
              {"instructions", s.instructions},
              {"max_output_tokens", s.max_output_tokens},
              {"model", s.model},
              {"output", output},
              {"parallel_tool_calls", s.parallel_tool_calls},
              {"previous_response_id", s.previous_response_id},
              {"reasoning", s.reasoning},
              {"store", s.store},
              {"temperature", s.temperature},
              {"text", {{"format", s.text_format}}},
              {"tool_choice", s.tool_choice},
              {"tools", s.tools},
              {"top_p", s.top_p},
              {"truncation", "disabled"},
              {"usage", usage},
              {"user", s.user},
              {"metadata", s.metadata}};
}

json response_of(const ResponseSkeleton& s, const ChoiceStream& choice, const json& usage) {
  const FinishReason reason = choice.finish_reason();
  const char* item_status = reason == FinishReason::stop ? "completed" : "incomplete";
  json output = json::array();
  if (!choice.reasoning().empty()) output.push_back(reasoning_item_json(s.item_id("rs"), choice.reasoning(), "completed"));
  const std::vector<ToolCall>& calls = choice.tool_calls();
  if (calls.empty() || !choice.content().empty())
    output.push_back(message_item_json(s.item_id("msg"), choice.content(), calls.empty() ? item_status : "completed"));
  for (size_t i = 0; i < calls.size(); ++i)
    output.push_back(function_call_item_json(s.item_id("fc") + "_" + std::to_string(i), calls[i], "completed"));
  // NOTE: calls parsed whole complete the response, whatever ended the text after them (as chat's
  // finish_reason "tool_calls").
  return response_json(s, calls.empty() ? reason : FinishReason::stop, output, usage);
}

ResponseEventStream::ResponseEventStream(ResponseSkeleton skeleton)
    : skeleton_(std::move(skeleton)),
      reasoning_id_(skeleton_.item_id("rs")),
      message_id_(skeleton_.item_id("msg")) {}

std::string ResponseEventStream::event(json body) {
  body["sequence_number"] = sequence_number_++;
  return "event: " + body["type"].get<std::string>() + "\ndata: " + dump_json(body) + "\n\n";
}

std::string ResponseEventStream::events(std::initializer_list<json> bodies) {
  std::string out;  // NOTE: in order, so sequence numbers rise (operands of + are unsequenced)
  for (const json& body : bodies) out += event(body);
  return out;
}

std::string ResponseEventStream::start() {
  json in_progress = response_json(skeleton_, FinishReason::none, json::array(), nullptr);
  return events({json{{"type", "response.created"}, {"response", in_progress}},
                 json{{"type", "response.in_progress"}, {"response", in_progress}}});
}

std::string ResponseEventStream::open_reasoning() {
  reasoning_open_ = true;
  ++output_index_;
  return events({json{{"type", "response.output_item.added"},
                      {"output_index", output_index_},
                      {"item", reasoning_item_json(reasoning_id_, "", "in_progress")}},
                 json{{"type", "response.content_part.added"},
                      {"item_id", reasoning_id_},
                      {"output_index", output_index_},
                      {"content_index", 0},
                      {"part", {{"type", "reasoning_text"}, {"text", ""}}}}});
}

std::string ResponseEventStream::close_reasoning() {
  reasoning_open_ = false;
  reasoning_done_ = true;
  json part{{"type", "reasoning_text"}, {"text", reasoning_}};
  return events({json{{"type", "response.reasoning_text.done"},
                      {"item_id", reasoning_id_},
                      {"output_index", output_index_},
                      {"content_index", 0},
                      {"text", reasoning_}},
                 json{{"type", "response.content_part.done"},
                      {"item_id", reasoning_id_},
                      {"output_index", output_index_},
                      {"content_index", 0},
                      {"part", part}},
                 json{{"type", "response.output_item.done"},
                      {"output_index", output_index_},
                      {"item", reasoning_item_json(reasoning_id_, reasoning_, "completed")}}});
}

std::string ResponseEventStream::open_message() {
  std::string out = reasoning_open_ ? close_reasoning() : "";
  message_open_ = true;
  ++output_index_;
  out += events({json{{"type", "response.output_item.added"},
                      {"output_index", output_index_},
                      {"item", message_item_json(message_id_, "", "in_progress")}},
                 json{{"type", "response.content_part.added"},
                      {"item_id", message_id_},
                      {"output_index", output_index_},
                      {"content_index", 0},
                      {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}}});
  return out;
}

std::string ResponseEventStream::close_message(const char* status) {
  message_open_ = false;
  message_done_ = true;
  json part{{"type", "output_text"}, {"text", content_}, {"annotations", json::array()}};
  return events({json{{"type", "response.output_text.done"},
                      {"item_id", message_id_},
                      {"output_index", output_index_},
                      {"content_index", 0},
                      {"text", content_},
                      {"logprobs", json::array()}},
                 json{{"type", "response.content_part.done"},
                      {"item_id", message_id_},
                      {"output_index", output_index_},
                      {"content_index", 0},
                      {"part", part}},
                 json{{"type", "response.output_item.done"},
                      {"output_index", output_index_},
                      {"item", message_item_json(message_id_, content_, status)}}});
}

std::string ResponseEventStream::push(const ChoiceDelta& delta) {
  std::string out;
  // NOTE: reasoning after the message opened (a second <think>) has no item left to go to; it
  // stays in the message, as the chat route would put it in content.
  if (!delta.reasoning.empty()) {
    if (message_open_ || message_done_) {
      ChoiceDelta as_content;
      as_content.content = delta.reasoning;
      out += push(as_content);
    } else {
      if (!reasoning_open_) out += open_reasoning();
      reasoning_ += delta.reasoning;
      out += event(json{{"type", "response.reasoning_text.delta"},
                        {"item_id", reasoning_id_},
                        {"output_index", output_index_},
                        {"content_index", 0},
                        {"delta", delta.reasoning}});
    }
  }
  if (!delta.content.empty() && !message_done_ && calls_.empty()) {
    if (!message_open_) out += open_message();
    content_ += delta.content;
    out += event(json{{"type", "response.output_text.delta"},
                      {"item_id", message_id_},
                      {"output_index", output_index_},
                      {"content_index", 0},
                      {"delta", delta.content},
                      {"logprobs", json::array()}});
  }
  for (const ToolCallDelta& call : delta.tool_calls) out += push_tool_call(call);
  return out;
}

std::string ResponseEventStream::call_item_id(size_t index) const { return skeleton_.item_id("fc") + "_" + std::to_string(index); }

std::string ResponseEventStream::push_tool_call(const ToolCallDelta& delta) {
  std::string out;
  if (delta.is_first) {
    if (call_open_) out += close_call();
    if (reasoning_open_) out += close_reasoning();
    if (message_open_) out += close_message("completed");
    calls_.push_back(ToolCall{delta.id, delta.name, ""});
    call_open_ = true;
    call_output_index_.push_back(++output_index_);
    out += event(json{{"type", "response.output_item.added"},
                      {"output_index", output_index_},
                      {"item", function_call_item_json(call_item_id(calls_.size() - 1), calls_.back(), "in_progress")}});
  }
  const size_t index = size_t(delta.index);
  if (index >= calls_.size() || delta.arguments.empty()) return out;
  calls_[index].arguments += delta.arguments;
  out += event(json{{"type", "response.function_call_arguments.delta"},
                    {"item_id", call_item_id(index)},
                    {"output_index", call_output_index_[index]},
                    {"delta", delta.arguments}});
  return out;
}

std::string ResponseEventStream::close_call() {
  call_open_ = false;
  const size_t index = calls_.size() - 1;
  const ToolCall& call = calls_[index];
  return events({json{{"type", "response.function_call_arguments.done"},
                      {"item_id", call_item_id(index)},
                      {"output_index", call_output_index_[index]},
                      {"name", call.name},
                      {"arguments", call.arguments}},
                 json{{"type", "response.output_item.done"},
                      {"output_index", call_output_index_[index]},
                      {"item", function_call_item_json(call_item_id(index), call, "completed")}}});
}

json ResponseEventStream::output(const char* message_status) const {
  json items = json::array();
  if (reasoning_done_) items.push_back(reasoning_item_json(reasoning_id_, reasoning_, "completed"));
  if (message_done_) items.push_back(message_item_json(message_id_, content_, calls_.empty() ? message_status : "completed"));
  for (size_t i = 0; i < calls_.size(); ++i)
    items.push_back(function_call_item_json(call_item_id(i), calls_[i], "completed"));
  return items;
}

std::string ResponseEventStream::finish(FinishReason reason, const json& usage) {
  const char* item_status = reason == FinishReason::stop ? "completed" : "incomplete";
  std::string out;
  if (reasoning_open_) out += close_reasoning();
  if (call_open_) out += close_call();
  if (!calls_.empty() && (reason == FinishReason::length || reason == FinishReason::stop)) reason = FinishReason::stop;
  if (!message_open_ && !message_done_ && calls_.empty()) out += open_message();
  if (message_open_) out += close_message(item_status);
  // NOTE: a drain's abort (status cancelled) has no event of its own in OpenAI's list.
  const char* type = reason == FinishReason::stop ? "response.completed" : "response.incomplete";
  json response = response_json(skeleton_, reason, output(item_status), usage);
  return out + event(json{{"type", type}, {"response", response}});
}

std::string ResponseEventStream::fail(const std::string& code, const std::string& message, const json& usage) {
  json error{{"code", code}, {"message", message}};
  const char* item_status = "incomplete";
  std::string out = event(json{{"type", "error"}, {"code", code}, {"message", message}, {"param", nullptr}});
  json response = response_json(skeleton_, FinishReason::error, output(item_status), usage, error);
  return out + event(json{{"type", "response.failed"}, {"response", response}});
}

}  // namespace troupe::http
