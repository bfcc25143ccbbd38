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
              {"parallel_tool_calls", false},
              {"previous_response_id", s.previous_response_id},
              {"reasoning", s.reasoning},
              {"store", s.store},
              {"temperature", s.temperature},
              {"text", {{"format", s.text_format}}},
              {"tool_choice", "none"},
              {"tools", json::array()},
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
  output.push_back(message_item_json(s.item_id("msg"), choice.content(), item_status));
  return response_json(s, reason, output, usage);
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
  if (!delta.content.empty() && !message_done_) {
    if (!message_open_) out += open_message();
    content_ += delta.content;
    out += event(json{{"type", "response.output_text.delta"},
                      {"item_id", message_id_},
                      {"output_index", output_index_},
                      {"content_index", 0},
                      {"delta", delta.content},
                      {"logprobs", json::array()}});
  }
  return out;
}

json ResponseEventStream::output(const char* message_status) const {
  json items = json::array();
  if (reasoning_done_) items.push_back(reasoning_item_json(reasoning_id_, reasoning_, "completed"));
  if (message_done_) items.push_back(message_item_json(message_id_, content_, message_status));
  return items;
}

std::string ResponseEventStream::finish(FinishReason reason, const json& usage) {
  const char* item_status = reason == FinishReason::stop ? "completed" : "incomplete";
  std::string out;
  if (reasoning_open_) out += close_reasoning();
  if (!message_open_ && !message_done_) out += open_message();
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
