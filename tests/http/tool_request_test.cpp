// tools / tool_choice read from a request body, the JSON schema that forces a call (vLLM's
// shapes), and the constrained output read back into calls.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "http/openai_request.hpp"
#include "http/tool_request.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;

json tool(const std::string& name, json parameters = nullptr) {
  json function{{"name", name}};
  if (!parameters.is_null()) function["parameters"] = parameters;
  return json{{"type", "function"}, {"function", function}};
}

TEST(ToolRequest, DefaultsAndChoices) {
  json tools = nullptr;
  std::string param;
  auto none = read_tool_choice(json{{"model", "m"}}, tools, param);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->mode, ToolChoice::Mode::none);
  auto dflt = read_tool_choice(json{{"tools", {tool("f")}}}, tools, param);
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ(dflt->mode, ToolChoice::Mode::auto_);
  EXPECT_FALSE(dflt->given);
  EXPECT_EQ(tools.size(), 1u);
  auto named = read_tool_choice(json{{"tools", {tool("f")}}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "f"}}}}}},
                                tools, param);
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->mode, ToolChoice::Mode::named);
  EXPECT_EQ(named->name, "f");
  // An empty tools list is no tools.
  auto empty = read_tool_choice(json{{"tools", json::array()}}, tools, param);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->mode, ToolChoice::Mode::none);
  EXPECT_TRUE(tools.is_null());
}

TEST(ToolRequest, AutoNeedsBothFlags) {
  ToolChoice choice;
  choice.mode = ToolChoice::Mode::auto_;
  std::string param;
  EXPECT_FALSE(check_tool_choice_allowed(choice, false, "hermes", param).ok());
  EXPECT_EQ(param, "tool_choice");
  EXPECT_FALSE(check_tool_choice_allowed(choice, true, "", param).ok());
  EXPECT_TRUE(check_tool_choice_allowed(choice, true, "hermes", param).ok());
  choice.mode = ToolChoice::Mode::required;
  EXPECT_TRUE(check_tool_choice_allowed(choice, false, "", param).ok());
}

TEST(ToolRequest, NamedSchemaIsTheParameters) {
  const json params{{"type", "object"}, {"properties", {{"x", {{"type", "number"}}}}}};
  const json tools = {tool("f", params), tool("g")};
  std::string param;
  ToolChoice choice{ToolChoice::Mode::named, "f", true};
  auto c = tool_choice_constraint(choice, tools, param);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, OutputConstraint::Kind::json_schema);
  EXPECT_EQ(json::parse(c->spec), params);
  // A function without parameters takes an object with none.
  choice.name = "g";
  auto g = tool_choice_constraint(choice, tools, param);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(json::parse(g->spec), json({{"type", "object"}, {"properties", json::object()}}));
  choice.mode = ToolChoice::Mode::auto_;
  EXPECT_TRUE(tool_choice_constraint(choice, tools, param)->is_none());
}

TEST(ToolRequest, RequiredSchemaGathersDefs) {
  const json a{{"type", "object"},
               {"properties", {{"p", {{"$ref", "#/$defs/Point"}}}}},
               {"$defs", {{"Point", {{"type", "object"}, {"properties", {{"x", {{"type", "number"}}}}}}}}}};
  const json b{{"type", "object"}, {"properties", {{"q", {{"type", "string"}}}}}};
  std::string param;
  ToolChoice choice{ToolChoice::Mode::required, "", true};
  auto c = tool_choice_constraint(choice, json{tool("a", a), tool("b", b)}, param);
  ASSERT_TRUE(c.ok());
  json schema = json::parse(c->spec);
  EXPECT_EQ(schema["type"], "array");
  EXPECT_EQ(schema["minItems"], 1);
  EXPECT_EQ(schema["items"]["type"], "object");
  ASSERT_EQ(schema["items"]["anyOf"].size(), 2u);
  const json& first = schema["items"]["anyOf"][0];
  EXPECT_EQ(first["properties"]["name"], json({{"type", "string"}, {"enum", {"a"}}}));
  EXPECT_FALSE(first["properties"]["parameters"].contains("$defs"));
  EXPECT_EQ(first["required"], json({"name", "parameters"}));
  EXPECT_EQ(schema["$defs"]["Point"], a["$defs"]["Point"]);
  // The same name defined differently by two tools: an error naming tools.
  json a2 = a;
  a2["$defs"]["Point"]["properties"]["y"] = {{"type", "number"}};
  auto clash = tool_choice_constraint(choice, json{tool("a", a), tool("c", a2)}, param);
  EXPECT_FALSE(clash.ok());
  EXPECT_EQ(param, "tools");
}

TEST(ToolRequest, ForcedOutputReadsBackIntoCalls) {
  ToolChoice required{ToolChoice::Mode::required, "", true};
  auto parser = tool_parser_for(required, "");
  ASSERT_NE(parser, nullptr);
  ToolParse parse = parse_tool_calls(*parser, R"([{"name": "a", "parameters": {"p": {"x": 1.5}}}])");
  ASSERT_EQ(parse.calls.size(), 1u);
  EXPECT_EQ(parse.calls[0].name, "a");
  EXPECT_EQ(parse.calls[0].arguments, R"({"p": {"x": 1.5}})");
  ToolChoice named{ToolChoice::Mode::named, "b", true};
  ToolParse one = parse_tool_calls(*tool_parser_for(named, ""), R"({"q": "ü\n"})");
  ASSERT_EQ(one.calls.size(), 1u);
  EXPECT_EQ(one.calls[0].name, "b");
  ToolChoice none;
  EXPECT_EQ(tool_parser_for(none, "hermes"), nullptr);
  ToolChoice automatic{ToolChoice::Mode::auto_, "", false};
  EXPECT_NE(tool_parser_for(automatic, "hermes"), nullptr);
}

TEST(ToolRequest, ConstraintsDoNotStack) {
  SamplingParams params;
  params.constraint = {OutputConstraint::Kind::json_object, ""};
  std::string param;
  ToolChoice required{ToolChoice::Mode::required, "", true};
  Status s = apply_tool_choice(required, json{tool("a")}, false, "", params, param);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(param, "tool_choice");
  EXPECT_EQ(params.constraint.kind, OutputConstraint::Kind::json_object);
}

TEST(ToolRequest, ToolCallTurnKeepsNullContent) {
  json body{{"model", "m"},
            {"messages",
             {{{"role", "user"}, {"content", "hi"}},
              {{"role", "assistant"},
               {"content", nullptr},
               {"tool_calls", {{{"id", "c"}, {"type", "function"}, {"function", {{"name", "f"}, {"arguments", "{}"}}}}}}},
              {{"role", "tool"}, {"tool_call_id", "c"}, {"content", "1"}},
              {{"role", "assistant"}, {"content", nullptr}}}}};
  std::string param;
  auto r = parse_chat_request(body, param);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->messages[1]["content"].is_null());
  EXPECT_EQ(r->messages[1]["tool_calls"][0]["function"]["arguments"], "{}");
  EXPECT_EQ(r->messages[2]["tool_call_id"], "c");
  EXPECT_EQ(r->messages[3]["content"], "");  // no calls: "" as before
}

}  // namespace
}  // namespace troupe::http
