#include "http/responses_request.hpp"

#include <set>

namespace troupe::http {
namespace {

using nlohmann::json;

Error bad(std::string& param, const std::string& name, const std::string& what) {
  param = name;
  return make_error(ErrorCode::invalid_argument, "'" + name + "' " + what);
}

std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 64 ? s.substr(0, 61) + "..." : s;
}

bool present(const json& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

// Fields OpenAI defines that change nothing here (no logprobs yet).
const std::set<std::string>& accepted_without_effect() {
  static const std::set<std::string> names = {"include",          "service_tier",      "top_logprobs",   "max_tool_calls",
                                              "prompt_cache_key", "safety_identifier", "stream_options", "truncation"};
  return names;
}

Result<std::string> required_string(const json& item, const char* key, const std::string& name, std::string& param) {
  if (!item.contains(key) || !item[key].is_string()) return bad(param, name + "." + key, "is required (a string)");
  return item[key].get<std::string>();
}

// A function_call item (a call the model made, sent back as history): the assistant's tool call.
Result<json> function_call_message(const json& item, const std::string& name, std::string& param) {
  Result<std::string> call_id = required_string(item, "call_id", name, param);
  if (!call_id.ok()) return call_id.error();
  Result<std::string> function = required_string(item, "name", name, param);
  if (!function.ok()) return function.error();
  Result<std::string> arguments = required_string(item, "arguments", name, param);
  if (!arguments.ok()) return arguments.error();
  json call{{"id", call_id.value()}, {"type", "function"},
            {"function", {{"name", function.value()}, {"arguments", arguments.value()}}}};
  return json{{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array({call})}};
}

// A function_call_output item (the client ran the call): the tool message answering it.
Result<json> function_call_output_message(const json& item, const std::string& name, std::string& param) {
  Result<std::string> call_id = required_string(item, "call_id", name, param);
  if (!call_id.ok()) return call_id.error();
  if (!item.contains("output")) return bad(param, name + ".output", "is required (a string)");
  std::string output;
  if (item["output"].is_string()) {
    output = item["output"].get<std::string>();
  } else if (item["output"].is_array()) {
    for (size_t j = 0; j < item["output"].size(); ++j) {
      const json& part = item["output"][j];
      const std::string part_name = name + ".output[" + std::to_string(j) + "]";
      if (!part.is_object() || part.value("type", "") != "input_text" || !part.contains("text") || !part["text"].is_string())
        return bad(param, part_name, "must be an input_text part (only text outputs are supported)");
      output += part["text"].get<std::string>();
    }
  } else {
    return bad(param, name + ".output", "must be a string or a list of input_text parts");
  }
  return json{{"role", "tool"}, {"tool_call_id", call_id.value()}, {"content", output}};
}

// One content part of an input message: its text, or an error naming the part.
Result<std::string> part_text(const json& part, const std::string& name, std::string& param) {
  if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
    return bad(param, name, "must be an object with a 'type'");
  const std::string type = part["type"].get<std::string>();
  if (type == "input_text" || type == "output_text" || type == "text") {
    if (!part.contains("text") || !part["text"].is_string()) return bad(param, name + ".text", "must be a string");
    return part["text"].get<std::string>();
  }
  if (type == "input_image" || type == "input_file" || type == "input_audio")
    return bad(param, name, "is " + type + ": only text inputs are supported (input_text, output_text)");
  return bad(param, name + ".type", "must be input_text or output_text, got " + shown(type));
}

// One input item as a chat message; null for an item that carries nothing to render (reasoning).
Result<json> input_message(const json& item, size_t index, std::string& param) {
  const std::string name = "input[" + std::to_string(index) + "]";
  if (!item.is_object()) return bad(param, name, "must be an object");
  std::string type = "message";
  if (present(item, "type")) {
    if (!item["type"].is_string()) return bad(param, name + ".type", "must be a string");
    type = item["type"].get<std::string>();
  }
  // NOTE: a client replaying its history sends back our reasoning items; as vLLM, they are dropped.
  if (type == "reasoning") return json(nullptr);
  if (type == "function_call") return function_call_message(item, name, param);
  if (type == "function_call_output") return function_call_output_message(item, name, param);
  if (type != "message")
    return bad(param, name + ".type",
               "is " + shown(type) + ": only message, function_call and function_call_output items are supported");
  if (!item.contains("role") || !item["role"].is_string()) return bad(param, name + ".role", "is required");
  std::string role = item["role"].get<std::string>();
  if (role != "user" && role != "system" && role != "developer" && role != "assistant")
    return bad(param, name + ".role", "must be user, system, developer or assistant, got " + shown(role));
  // NOTE: chat templates know no developer role; OpenAI treats it as system for such models.
  if (role == "developer") role = "system";
  if (!item.contains("content")) return bad(param, name + ".content", "is required");
  const json& content = item["content"];
  std::string text;
  if (content.is_string()) {
    text = content.get<std::string>();
  } else if (content.is_array()) {
    for (size_t j = 0; j < content.size(); ++j) {
      Result<std::string> t = part_text(content[j], name + ".content[" + std::to_string(j) + "]", param);
      if (!t.ok()) return t.error();
      text += t.value();
    }
  } else {
    return bad(param, name + ".content", "must be a string or a list of content parts");
  }
  return json{{"role", role}, {"content", text}};
}

// The input as chat messages (instructions not included).
Result<json> read_input(const json& body, std::string& param) {
  if (!present(body, "input")) return bad(param, "input", "is required (a string or a list of message items)");
  const json& input = body["input"];
  json messages = json::array();
  if (input.is_string()) {
    messages.push_back(json{{"role", "user"}, {"content", input}});
  } else if (input.is_array() && !input.empty()) {
    for (size_t i = 0; i < input.size(); ++i) {
      Result<json> m = input_message(input[i], i, param);
      if (!m.ok()) return m.error();
      if (m->is_null()) continue;
      // Calls after an assistant turn (its text, or other calls) join it: one turn, several calls.
      if (m->contains("tool_calls") && !messages.empty() && messages.back()["role"] == "assistant") {
        json& last = messages.back();
        if (!last.contains("tool_calls")) last["tool_calls"] = json::array();
        last["tool_calls"].push_back((*m)["tool_calls"][0]);
        continue;
      }
      messages.push_back(std::move(m).value());
    }
  } else {
    return bad(param, "input", "must be a string or a non-empty list of message items");
  }
  if (messages.empty()) return bad(param, "input", "holds no message");
  return messages;
}

// text.format: text (no constraint), json_object, or json_schema (its schema becomes the
// constraint the engine's grammar enforces).
Status read_text_format(const json& body, ResponsesRequest& r, std::string& param) {
  r.text_format = json{{"type", "text"}};
  if (!present(body, "text")) return Status::success();
  const json& text = body["text"];
  if (!text.is_object()) return bad(param, "text", "must be an object");
  if (!present(text, "format")) return Status::success();
  const json& format = text["format"];
  if (!format.is_object() || !format.contains("type") || !format["type"].is_string())
    return bad(param, "text.format", "must be an object with a 'type'");
  const std::string type = format["type"].get<std::string>();
  OutputConstraint& constraint = r.chat.params.constraint;
  if (type == "text") {
    constraint = {};
  } else if (type == "json_object") {
    constraint = {OutputConstraint::Kind::json_object, ""};
  } else if (type == "json_schema") {
    if (!format.contains("name") || !format["name"].is_string() || format["name"].get<std::string>().empty())
      return bad(param, "text.format.name", "is required (a non-empty string)");
    if (!format.contains("schema") || !format["schema"].is_object())
      return bad(param, "text.format.schema", "is required (a JSON schema object)");
    if (present(format, "strict") && !format["strict"].is_boolean())
      return bad(param, "text.format.strict", "must be a boolean");
    constraint = {OutputConstraint::Kind::json_schema, format["schema"].dump()};
  } else {
    return bad(param, "text.format.type", "must be text, json_object or json_schema, got " + shown(type));
  }
  r.text_format = format;
  return Status::success();
}

// tools (the Responses API's flat function tools), tool_choice and parallel_tool_calls, in the
// chat route's form, into `chat` (its parser checks them once more, with the tool history).
Status read_tools(const json& body, ResponsesRequest& r, json& chat, std::string& param) {
  r.tools = json::array();
  r.tool_choice = "auto";
  if (present(body, "tools")) {
    if (!body["tools"].is_array()) return bad(param, "tools", "must be a list");
    json chat_tools = json::array();
    for (size_t i = 0; i < body["tools"].size(); ++i) {
      const json& tool = body["tools"][i];
      const std::string name = "tools[" + std::to_string(i) + "]";
      if (!tool.is_object() || !tool.contains("type") || !tool["type"].is_string())
        return bad(param, name, "must be an object with a 'type'");
      if (tool["type"] != "function")
        return bad(param, name + ".type", "is " + shown(tool["type"]) + ": only function tools are supported");
      if (!tool.contains("name") || !tool["name"].is_string() || tool["name"].get<std::string>().empty())
        return bad(param, name + ".name", "is required (a non-empty string)");
      json function{{"name", tool["name"]}};
      if (present(tool, "description")) {
        if (!tool["description"].is_string()) return bad(param, name + ".description", "must be a string");
        function["description"] = tool["description"];
      }
      if (present(tool, "parameters")) {
        if (!tool["parameters"].is_object()) return bad(param, name + ".parameters", "must be a JSON schema object");
        function["parameters"] = tool["parameters"];
      }
      if (present(tool, "strict")) {
        if (!tool["strict"].is_boolean()) return bad(param, name + ".strict", "must be a boolean");
        function["strict"] = tool["strict"];
      }
      chat_tools.push_back(json{{"type", "function"}, {"function", std::move(function)}});
      r.tools.push_back(tool);
    }
    if (!chat_tools.empty()) chat["tools"] = std::move(chat_tools);
  }
  if (r.tools.empty()) r.tool_choice = "none";
  if (present(body, "tool_choice")) {
    const json& choice = body["tool_choice"];
    if (choice.is_string()) {
      // none | auto | required, checked by the chat parser; auto without tools is none.
      if (choice != "auto" || !r.tools.empty()) chat["tool_choice"] = choice;
    } else if (choice.is_object() && choice.value("type", "") == "function") {
      if (!choice.contains("name") || !choice["name"].is_string())
        return bad(param, "tool_choice.name", "is required (a string)");
      chat["tool_choice"] = json{{"type", "function"}, {"function", {{"name", choice["name"]}}}};
    } else {
      return bad(param, "tool_choice", "must be none, auto, required or {\"type\": \"function\", \"name\": ...}, got " +
                                           shown(choice));
    }
    r.tool_choice = choice;
  }
  if (present(body, "parallel_tool_calls")) {
    if (!body["parallel_tool_calls"].is_boolean()) return bad(param, "parallel_tool_calls", "must be a boolean");
    r.parallel_tool_calls = body["parallel_tool_calls"].get<bool>();
    chat["parallel_tool_calls"] = body["parallel_tool_calls"];
  }
  return Status::success();
}

// Checks the fields that are refused or only echoed; collects the ignored ones.
Status read_other_fields(const json& body, ResponsesRequest& r, std::string& param) {
  if (present(body, "previous_response_id")) {
    const json& id = body["previous_response_id"];
    if (!id.is_string() || id.get<std::string>().empty())
      return bad(param, "previous_response_id", "must be a response id (a non-empty string)");
    r.previous_response_id = id.get<std::string>();
  }
  if (present(body, "conversation"))
    return bad(param, "conversation",
               "is not supported: use previous_response_id, or send the conversation in 'input'");
  if (present(body, "prompt"))
    return bad(param, "prompt", "(a stored prompt template) is not supported; send the text in 'input'");
  if (present(body, "background")) {
    if (!body["background"].is_boolean()) return bad(param, "background", "must be a boolean");
    if (body["background"].get<bool>()) return bad(param, "background", "is not supported (it needs storage)");
  }
  if (present(body, "store")) {
    if (!body["store"].is_boolean()) return bad(param, "store", "must be a boolean");
    r.store = body["store"].get<bool>();
  }
  r.metadata = json::object();
  if (present(body, "metadata")) {
    if (!body["metadata"].is_object()) return bad(param, "metadata", "must be an object of strings");
    for (const auto& [key, value] : body["metadata"].items())
      if (!value.is_string()) return bad(param, "metadata." + key, "must be a string");
    r.metadata = body["metadata"];
  }
  r.user = nullptr;
  if (present(body, "user")) {
    if (!body["user"].is_string()) return bad(param, "user", "must be a string");
    r.user = body["user"];
  }
  r.reasoning = json{{"effort", nullptr}, {"summary", nullptr}};
  if (present(body, "reasoning")) {
    const json& reasoning = body["reasoning"];
    if (!reasoning.is_object()) return bad(param, "reasoning", "must be an object");
    for (const char* key : {"effort", "summary"}) {
      if (!present(reasoning, key)) continue;
      if (!reasoning[key].is_string()) return bad(param, std::string("reasoning.") + key, "must be a string");
      r.reasoning[key] = reasoning[key];
    }
  }
  if (present(body, "truncation") && body["truncation"] != "disabled" && body["truncation"] != "auto")
    return bad(param, "truncation", "must be disabled or auto, got " + shown(body["truncation"]));
  static const std::set<std::string> handled = {
      "model",  "input", "instructions", "max_output_tokens", "temperature", "top_p",     "stream",  "text",
      "store",  "metadata", "user",      "reasoning",         "tools",       "previous_response_id", "conversation",
      "prompt", "background", "tool_choice", "parallel_tool_calls"};
  for (const auto& [key, value] : body.items())
    if (!handled.count(key) && !value.is_null())
      r.ignored_fields.push_back(accepted_without_effect().count(key) ? key : key + " (unknown)");
  return Status::success();
}

}  // namespace

Result<ResponsesRequest> parse_responses_request(const json& body, std::string& param,
                                                 const GenerationDefaults& defaults) {
  ResponsesRequest r;
  if (!body.contains("model") || !body["model"].is_string())
    return bad(param, "model", "is required and must be a string");
  if (present(body, "instructions") && !body["instructions"].is_string())
    return bad(param, "instructions", "must be a string");
  Result<json> input = read_input(body, param);
  if (!input.ok()) return input.error();
  r.input_messages = std::move(input).value();
  json messages = json::array();
  if (present(body, "instructions")) messages.push_back(json{{"role", "system"}, {"content", body["instructions"]}});
  for (const json& m : r.input_messages) messages.push_back(m);
  // The chat body of the same request: one parser checks the sampling fields of both routes.
  json chat{{"model", body["model"]}, {"messages", std::move(messages)}};
  for (const char* key : {"temperature", "top_p", "stream"})
    if (body.contains(key)) chat[key] = body[key];
  if (body.contains("max_output_tokens")) chat["max_tokens"] = body["max_output_tokens"];
  TROUPE_TRY(read_tools(body, r, chat, param));
  Result<OpenAIRequest> parsed = parse_chat_request(chat, param, defaults);
  if (!parsed.ok()) {
    // The chat parser's names, as the Responses API spells them.
    const std::string chat_param = param;
    if (param == "max_tokens") param = "max_output_tokens";
    if (param.rfind("messages", 0) == 0) param = "input";
    if (param == "tool_choice.function.name") param = "tool_choice.name";
    if (param.rfind("tools[", 0) == 0) {
      if (size_t at = param.find(".function"); at != std::string::npos) param.erase(at, 9);
    }
    Error error = parsed.error();
    error.param = param;
    const std::string quoted = "'" + chat_param + "'";
    if (size_t at = error.message.find(quoted); param != "input" && at != std::string::npos)
      error.message.replace(at, quoted.size(), "'" + param + "'");
    return error;
  }
  r.chat = std::move(parsed).value();
  r.instructions = present(body, "instructions") ? body["instructions"] : json(nullptr);
  TROUPE_TRY(read_text_format(body, r, param));
  TROUPE_TRY(read_other_fields(body, r, param));
  return r;
}

}  // namespace troupe::http
