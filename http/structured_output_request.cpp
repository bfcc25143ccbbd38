#include "http/structured_output_request.hpp"

#include "engine/constrained_decoding.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;
using Kind = OutputConstraint::Kind;

Error bad(std::string& param, const std::string& name, const std::string& what) {
  param = name;
  return make_error(ErrorCode::invalid_argument, "'" + name + "' " + what);
}

bool present(const json& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

// A schema given as an object / boolean, or as JSON text (vLLM accepts both).
Result<std::string> schema_text(const json& v, std::string& param, const std::string& name) {
  if (v.is_object() || v.is_boolean()) return v.dump();
  if (v.is_string()) {
    json parsed = json::parse(v.get<std::string>(), nullptr, false);
    if (!parsed.is_discarded() && (parsed.is_object() || parsed.is_boolean())) return parsed.dump();
  }
  return bad(param, name, "must be a JSON schema (an object)");
}

Result<std::string> choices_text(const json& v, std::string& param, const std::string& name) {
  if (!v.is_array() || v.empty()) return bad(param, name, "must be a non-empty list of strings");
  for (const auto& c : v)
    if (!c.is_string()) return bad(param, name, "must be a non-empty list of strings");
  return v.dump();
}

Status read_response_format(const json& rf, OutputConstraint& out, std::string& param) {
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
    return bad(param, "response_format", "must be an object with a 'type' (text, json_object or json_schema)");
  const std::string type = rf["type"].get<std::string>();
  if (type == "text") return Status::success();
  if (type == "json_object") {
    out.kind = Kind::json_object;
    return Status::success();
  }
  if (type != "json_schema")
    return bad(param, "response_format", "type must be text, json_object or json_schema, got '" + type + "'");
  if (!rf.contains("json_schema") || !rf["json_schema"].is_object())
    return bad(param, "response_format", "of type json_schema needs a 'json_schema' object");
  const json& js = rf["json_schema"];
  if (js.contains("strict") && !js["strict"].is_null() && !js["strict"].is_boolean())
    return bad(param, "response_format", "json_schema.strict must be a boolean");
  if (js.contains("name") && !js["name"].is_string())
    return bad(param, "response_format", "json_schema.name must be a string");
  if (!js.contains("schema")) return bad(param, "response_format", "json_schema.schema is required");
  auto text = schema_text(js["schema"], param, "response_format");
  if (!text.ok()) return text.error();
  out.kind = Kind::json_schema;
  out.spec = text.value();
  return Status::success();
}

Status read_structured_outputs(const json& so, OutputConstraint& out, std::string& param) {
  if (!so.is_object()) return bad(param, "structured_outputs", "must be an object");
  int count = 0;
  for (const char* key : {"json", "regex", "choice", "json_object", "grammar", "structural_tag"}) {
    if (!present(so, key)) continue;
    if (std::string(key) == "json_object" && so[key].is_boolean() && !so[key].get<bool>()) continue;
    ++count;
    const std::string name = std::string("structured_outputs.") + key;
    if (std::string(key) == "grammar" || std::string(key) == "structural_tag")
      return bad(param, name, "is not supported (json, regex, choice and json_object are)");
    if (std::string(key) == "json") {
      auto text = schema_text(so[key], param, name);
      if (!text.ok()) return text.error();
      out = OutputConstraint{Kind::json_schema, text.value()};
    } else if (std::string(key) == "regex") {
      if (!so[key].is_string()) return bad(param, name, "must be a string");
      out = OutputConstraint{Kind::regex, so[key].get<std::string>()};
    } else if (std::string(key) == "choice") {
      auto text = choices_text(so[key], param, name);
      if (!text.ok()) return text.error();
      out = OutputConstraint{Kind::choice, text.value()};
    } else {
      if (!so[key].is_boolean()) return bad(param, name, "must be a boolean");
      out = OutputConstraint{Kind::json_object, ""};
    }
  }
  if (count > 1) return bad(param, "structured_outputs", "may hold only one of json, regex, choice, json_object");
  return Status::success();
}

}  // namespace

Status read_structured_output(const json& body, OutputConstraint& out, std::string& param) {
  out = OutputConstraint{};
  std::string given;  // the field that set `out`
  if (present(body, "response_format")) {
    TROUPE_TRY(read_response_format(body["response_format"], out, param));
    if (!out.is_none()) given = "response_format";
  }
  auto read_if = [&](const char* field, auto read) -> Status {
    if (!present(body, field)) return Status::success();
    OutputConstraint mine;
    TROUPE_TRY(read(body[field], mine));
    if (mine.is_none()) return Status::success();
    if (!out.is_none()) return bad(param, field, "cannot be combined with '" + given + "': give one structured-output constraint");
    out = mine;
    given = field;
    return Status::success();
  };
  TROUPE_TRY(read_if("structured_outputs", [&](const json& v, OutputConstraint& o) { return read_structured_outputs(v, o, param); }));
  TROUPE_TRY(read_if("guided_json", [&](const json& v, OutputConstraint& o) -> Status {
    auto text = schema_text(v, param, "guided_json");
    if (!text.ok()) return text.error();
    o = OutputConstraint{Kind::json_schema, text.value()};
    return Status::success();
  }));
  TROUPE_TRY(read_if("guided_regex", [&](const json& v, OutputConstraint& o) -> Status {
    if (!v.is_string()) return bad(param, "guided_regex", "must be a string");
    o = OutputConstraint{Kind::regex, v.get<std::string>()};
    return Status::success();
  }));
  TROUPE_TRY(read_if("guided_choice", [&](const json& v, OutputConstraint& o) -> Status {
    auto text = choices_text(v, param, "guided_choice");
    if (!text.ok()) return text.error();
    o = OutputConstraint{Kind::choice, text.value()};
    return Status::success();
  }));
  if (present(body, "guided_grammar")) return bad(param, "guided_grammar", "is not supported (guided_json, guided_regex and guided_choice are)");
  if (out.is_none()) return Status::success();
  Status compiled = validate_output_constraint(out);
  if (!compiled.ok()) return bad(param, given, compiled.error().message);
  return Status::success();
}

}  // namespace troupe::http
