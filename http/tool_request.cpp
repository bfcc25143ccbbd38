#include "http/tool_request.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;

Error bad(std::string& param, const std::string& name, const std::string& what) {
  param = name;
  return make_error(ErrorCode::invalid_argument, "'" + name + "' " + what);
}

bool present(const json& object, const char* key) { return object.contains(key) && !object[key].is_null(); }

Status check_tool(const json& tool, const std::string& name, std::string& param) {
  if (!tool.is_object()) return bad(param, name, "must be an object");
  if (!tool.contains("type") || tool["type"] != "function")
    return bad(param, name + ".type", "must be \"function\"");
  if (!tool.contains("function") || !tool["function"].is_object())
    return bad(param, name + ".function", "is required and must be an object");
  const json& function = tool["function"];
  if (!function.contains("name") || !function["name"].is_string() || function["name"].get<std::string>().empty())
    return bad(param, name + ".function.name", "is required and must be a non-empty string");
  if (present(function, "description") && !function["description"].is_string())
    return bad(param, name + ".function.description", "must be a string");
  if (present(function, "parameters") && !function["parameters"].is_object())
    return bad(param, name + ".function.parameters", "must be a JSON schema object");
  if (present(function, "strict") && !function["strict"].is_boolean())
    return bad(param, name + ".function.strict", "must be a boolean");
  return Status::success();
}

json parameters_of(const json& tool) {
  const json& function = tool["function"];
  if (present(function, "parameters")) return function["parameters"];
  return json{{"type", "object"}, {"properties", json::object()}};
}

}  // namespace

Result<ToolChoice> read_tool_choice(const json& body, json& tools, std::string& param) {
  tools = nullptr;
  if (present(body, "tools")) {
    if (!body["tools"].is_array()) return bad(param, "tools", "must be a list");
    for (size_t i = 0; i < body["tools"].size(); ++i)
      TROUPE_TRY(check_tool(body["tools"][i], "tools[" + std::to_string(i) + "]", param));
    if (!body["tools"].empty()) tools = body["tools"];
  }
  ToolChoice choice;
  choice.mode = tools.is_null() ? ToolChoice::Mode::none : ToolChoice::Mode::auto_;
  if (present(body, "parallel_tool_calls")) {
    if (!body["parallel_tool_calls"].is_boolean()) return bad(param, "parallel_tool_calls", "must be a boolean");
    choice.parallel = body["parallel_tool_calls"].get<bool>();
  }
  if (!present(body, "tool_choice")) return choice;
  choice.given = true;
  const json& value = body["tool_choice"];
  if (value.is_string()) {
    const std::string mode = value.get<std::string>();
    if (mode == "none") choice.mode = ToolChoice::Mode::none;
    else if (mode == "auto") choice.mode = ToolChoice::Mode::auto_;
    else if (mode == "required") choice.mode = ToolChoice::Mode::required;
    else return bad(param, "tool_choice", "must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                                          "\"function\": {\"name\": ...}}, got \"" + mode + "\"");
  } else if (value.is_object()) {
    if (!value.contains("type") || value["type"] != "function")
      return bad(param, "tool_choice.type", "must be \"function\"");
    if (!value.contains("function") || !value["function"].is_object() || !value["function"].contains("name") ||
        !value["function"]["name"].is_string())
      return bad(param, "tool_choice.function.name", "is required and must be a string");
    choice.mode = ToolChoice::Mode::named;
    choice.name = value["function"]["name"].get<std::string>();
  } else {
    return bad(param, "tool_choice", "must be a string or an object");
  }
  if (choice.mode != ToolChoice::Mode::none && tools.is_null())
    return bad(param, "tool_choice", "needs 'tools' (a non-empty list) when it is not \"none\"");
  if (choice.mode == ToolChoice::Mode::named) {
    bool found = false;
    for (const json& tool : tools) found = found || tool["function"]["name"] == choice.name;
    if (!found) return bad(param, "tool_choice.function.name", "names '" + choice.name + "', which is not in 'tools'");
  }
  return choice;
}

Status check_tool_message(const json& message, const std::string& name, std::string& param) {
  const std::string role = message.value("role", "");
  if (present(message, "tool_calls")) {
    if (role != "assistant") return bad(param, name + ".tool_calls", "is only allowed in assistant messages");
    const json& calls = message["tool_calls"];
    if (!calls.is_array()) return bad(param, name + ".tool_calls", "must be a list");
    for (size_t i = 0; i < calls.size(); ++i) {
      const std::string at = name + ".tool_calls[" + std::to_string(i) + "]";
      const json& call = calls[i];
      if (!call.is_object()) return bad(param, at, "must be an object");
      if (present(call, "id") && !call["id"].is_string()) return bad(param, at + ".id", "must be a string");
      if (present(call, "type") && call["type"] != "function") return bad(param, at + ".type", "must be \"function\"");
      if (!call.contains("function") || !call["function"].is_object())
        return bad(param, at + ".function", "is required and must be an object");
      const json& function = call["function"];
      if (!function.contains("name") || !function["name"].is_string())
        return bad(param, at + ".function.name", "is required and must be a string");
      if (!function.contains("arguments") || !(function["arguments"].is_string() || function["arguments"].is_object()))
        return bad(param, at + ".function.arguments", "is required and must be a JSON string (or an object)");
    }
  }
  if (present(message, "tool_call_id") && !message["tool_call_id"].is_string())
    return bad(param, name + ".tool_call_id", "must be a string");
  return Status::success();
}

Result<OutputConstraint> tool_choice_constraint(const ToolChoice& choice, const json& tools, std::string& param) {
  OutputConstraint constraint;
  if (choice.mode == ToolChoice::Mode::named) {
    for (const json& tool : tools)
      if (tool["function"]["name"] == choice.name) {
        constraint.kind = OutputConstraint::Kind::json_schema;
        constraint.spec = parameters_of(tool).dump();
      }
    return constraint;
  }
  if (choice.mode != ToolChoice::Mode::required) return constraint;
  json any_of = json::array();
  json defs = json::object();
  for (const json& tool : tools) {
    json parameters = parameters_of(tool);
    if (parameters.contains("$defs") && parameters["$defs"].is_object()) {
      for (const auto& [def_name, def_schema] : parameters["$defs"].items()) {
        if (defs.contains(def_name) && defs[def_name] != def_schema)
          return bad(param, "tools", "define '$defs/" + def_name + "' twice, differently");
        defs[def_name] = def_schema;
      }
      parameters.erase("$defs");
    }
    any_of.push_back(json{{"properties", {{"name", {{"type", "string"}, {"enum", {tool["function"]["name"]}}}},
                                          {"parameters", parameters}}},
                          {"required", {"name", "parameters"}}});
  }
  json schema{{"type", "array"}, {"minItems", 1}, {"items", {{"type", "object"}, {"anyOf", any_of}}}};
  if (!choice.parallel) schema["maxItems"] = 1;
  if (!defs.empty()) schema["$defs"] = defs;
  constraint.kind = OutputConstraint::Kind::json_schema;
  constraint.spec = schema.dump();
  return constraint;
}

Status check_tool_choice_allowed(const ToolChoice& choice, bool enable_auto_tool_choice,
                                 const std::string& tool_call_parser, std::string& param) {
  if (choice.mode != ToolChoice::Mode::auto_ || (enable_auto_tool_choice && !tool_call_parser.empty()))
    return Status::success();
  return bad(param, "tool_choice",
             "\"auto\" (the default with tools) requires the server to run with --enable-auto-tool-choice and "
             "--tool-call-parser; send \"none\", \"required\" or a named function instead");
}

Status apply_tool_choice(const ToolChoice& choice, const json& tools, bool enable_auto_tool_choice,
                         const std::string& tool_call_parser, SamplingParams& params, std::string& param) {
  TROUPE_TRY(check_tool_choice_allowed(choice, enable_auto_tool_choice, tool_call_parser, param));
  Result<OutputConstraint> constraint = tool_choice_constraint(choice, tools, param);
  if (!constraint.ok()) return constraint.error();
  if (constraint->is_none()) return Status::success();
  if (!params.constraint.is_none())
    return bad(param, "tool_choice", "\"required\" or a named function cannot be combined with response_format or "
                                     "guided decoding");
  params.constraint = std::move(constraint).value();
  return Status::success();
}

Result<std::string> render_chat_with_tools(const TextCodec& codec, const json& messages, const json& tools,
                                           const ChatRenderOptions& options) {
  Result<std::string> rendered = codec.render_chat_with(messages, tools, options);
  if (rendered.ok() || !messages.is_array()) return rendered;
  json with_empty = messages;
  bool changed = false;
  for (json& m : with_empty)
    if (m.is_object() && m.value("role", "") == "assistant" && m.contains("content") && m["content"].is_null()) {
      m["content"] = "";
      changed = true;
    }
  if (!changed) return rendered;
  Result<std::string> again = codec.render_chat_with(with_empty, tools, options);
  return again.ok() ? again : rendered;
}

std::unique_ptr<ToolParser> tool_parser_for(const ToolChoice& choice, const std::string& tool_call_parser) {
  switch (choice.mode) {
    case ToolChoice::Mode::none: return nullptr;
    case ToolChoice::Mode::auto_: return ToolParser::create(tool_call_parser);
    case ToolChoice::Mode::required: return make_required_tool_parser();
    case ToolChoice::Mode::named: return make_named_tool_parser(choice.name);
  }
  return nullptr;
}

}  // namespace troupe::http
