// Tool calls through the HTTP server over the scripted FakeEngine: the model's tool-call text
// becomes `tool_calls` (whole and streamed, finish_reason "tool_calls"), malformed text comes
// back as content, tool_choice is checked against the flags, and "required" / a named function
// reach the engine as a JSON-schema constraint whose output is read back into calls.
#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

const json kWeather = {{"type", "function"},
                       {"function",
                        {{"name", "get_weather"},
                         {"description", "Weather in a city"},
                         {"parameters",
                          {{"type", "object"},
                           {"properties", {{"city", {{"type", "string"}}}}},
                           {"required", {"city"}}}}}}};
const json kAdd = {{"type", "function"},
                   {"function",
                    {{"name", "add"},
                     {"parameters",
                      {{"type", "object"}, {"properties", {{"a", {{"type", "integer"}}}, {"b", {{"type", "integer"}}}}}}}}}};

const std::string kHermesCall =
    "Let me look.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>";

// Room for the scripts (the DeepSeek markers are many bytes, one token each here).
FakeEngineOptions script(const std::string& text, int tokens_per_step = 1) {
  FakeEngineOptions options;
  options.script = text;
  options.tokens_per_step = tokens_per_step;
  options.max_model_len = 1024;
  return options;
}

Config tools_config(const std::string& parser) {
  Config config = test_config();
  config.enable_auto_tool_choice = true;
  config.tool_call_parser = parser;
  return config;
}

json tools_body(bool stream, json tool_choice = nullptr) {
  json body{{"model", "tiny"},
            {"messages", {{{"role", "user"}, {"content", "weather in Zürich?"}}}},
            {"tools", {kWeather, kAdd}},
            {"max_tokens", 400},
            {"stream", stream}};
  if (!tool_choice.is_null()) body["tool_choice"] = tool_choice;
  return body;
}

struct StreamedChat {
  std::string content, reasoning, finish_reason;
  json calls = json::array();  // accumulated: [{id, name, arguments}]
};

StreamedChat stream_chat(httplib::Client& c, const json& body) {
  StreamedChat out;
  auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
  if (!res) {
    ADD_FAILURE() << "no response";
    return out;
  }
  EXPECT_EQ(res->status, 200) << res->body;
  for (const json& e : sse_events(res->body)) {
    if (e == "[DONE]" || e["choices"].empty()) continue;
    const json& choice = e["choices"][0];
    const json& delta = choice["delta"];
    out.content += delta.value("content", "");
    out.reasoning += delta.value("reasoning_content", "");
    if (!choice["finish_reason"].is_null()) out.finish_reason = choice["finish_reason"];
    if (!delta.contains("tool_calls")) continue;
    for (const json& t : delta["tool_calls"]) {
      size_t index = t["index"];
      if (index == out.calls.size()) {
        // The first delta of a call: id, type and name.
        EXPECT_TRUE(t.contains("id") && t["type"] == "function" && t["function"].contains("name")) << t;
        out.calls.push_back(json{{"id", t["id"]}, {"name", t["function"]["name"]}, {"arguments", ""}});
      } else {
        EXPECT_LT(index, out.calls.size()) << t;
        EXPECT_FALSE(t.contains("id")) << t;
      }
      if (index < out.calls.size())
        out.calls[index]["arguments"] = out.calls[index]["arguments"].get<std::string>() +
                                        t["function"].value("arguments", "");
    }
  }
  return out;
}

TEST(HttpToolCalls, HermesCallBecomesToolCalls) {
  TestServer server(script(kHermesCall), tools_config("hermes"));
  auto c = server.client();
  auto reply = post_json(c, "/v1/chat/completions", tools_body(false));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& choice = reply.body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["message"]["content"], "Let me look.");
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << reply.raw;
  const json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["id"].get<std::string>().rfind("chatcmpl-tool-", 0), 0u);
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), json({{"city", "Zürich"}}));
}

TEST(HttpToolCalls, HermesCallStreamed) {
  TestServer server(script(kHermesCall, 3), tools_config("hermes"));
  auto c = server.client();
  StreamedChat s = stream_chat(c, tools_body(true));
  EXPECT_EQ(s.finish_reason, "tool_calls");
  EXPECT_EQ(s.content, "Let me look.");
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0]["name"], "get_weather");
  EXPECT_EQ(s.calls[0]["arguments"], "{\"city\": \"Zürich\"}");
}

TEST(HttpToolCalls, MalformedToolTextIsContent) {
  // Bad before the name is read: no call is ever sent, streamed or not.
  const std::string bad = "<tool_call>\n{name: \"add\", \"arguments\": {\"a\": 1}}\n</tool_call>";
  TestServer server(script(bad), tools_config("hermes"));
  auto c = server.client();
  auto reply = post_json(c, "/v1/chat/completions", tools_body(false));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(reply.body["choices"][0]["message"]["content"], bad);
  EXPECT_TRUE(reply.body["choices"][0]["message"]["tool_calls"].empty());
  EXPECT_EQ(reply.body["choices"][0]["finish_reason"], "stop");
  StreamedChat s = stream_chat(c, tools_body(true));
  EXPECT_EQ(s.content, bad);
  EXPECT_TRUE(s.calls.empty());
  EXPECT_EQ(s.finish_reason, "stop");
  // Cut short by max_tokens: content, finish_reason "length".
  json body = tools_body(false);
  body["max_tokens"] = 20;
  auto cut = post_json(c, "/v1/chat/completions", body);
  ASSERT_EQ(cut.status, 200) << cut.raw;
  EXPECT_EQ(cut.body["choices"][0]["message"]["content"], bad.substr(0, 20));
  EXPECT_EQ(cut.body["choices"][0]["finish_reason"], "length");
}

TEST(HttpToolCalls, ReasoningThenDeepseekCalls) {
  Config config = tools_config("deepseek_v3");
  config.reasoning_parser = "deepseek_r1";
  const std::string text = "The user wants weather.</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
                             "<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜>"
                             "<｜tool▁calls▁end｜>";
  TestServer server(script(text, 5), config, /*opens_think=*/true);
  auto c = server.client();
  auto reply = post_json(c, "/v1/chat/completions", tools_body(false));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& message = reply.body["choices"][0]["message"];
  EXPECT_EQ(message["reasoning_content"], "The user wants weather.");
  EXPECT_TRUE(message["content"].is_null()) << reply.raw;
  ASSERT_EQ(message["tool_calls"].size(), 1u);
  EXPECT_EQ(message["tool_calls"][0]["function"]["arguments"], "{\"city\": \"Oslo\"}");
  EXPECT_EQ(reply.body["choices"][0]["finish_reason"], "tool_calls");
  StreamedChat s = stream_chat(c, tools_body(true));
  EXPECT_EQ(s.reasoning, "The user wants weather.");
  EXPECT_EQ(s.content, "");
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0]["name"], "get_weather");
  EXPECT_EQ(s.calls[0]["arguments"], "{\"city\": \"Oslo\"}");
}

TEST(HttpToolCalls, AutoNeedsTheFlags) {
  TestServer server(script(kHermesCall));  // no --enable-auto-tool-choice
  auto c = server.client();
  for (json choice : {json(nullptr), json("auto")}) {
    auto reply = post_json(c, "/v1/chat/completions", tools_body(false, choice));
    std::string message = expect_error_shape(reply, 400);
    EXPECT_EQ(reply.body["error"]["param"], "tool_choice");
    EXPECT_NE(message.find("--enable-auto-tool-choice"), std::string::npos) << message;
  }
  // "none": the tools go to the template, the text stays text.
  auto none = post_json(c, "/v1/chat/completions", tools_body(false, "none"));
  ASSERT_EQ(none.status, 200) << none.raw;
  EXPECT_EQ(none.body["choices"][0]["message"]["content"], kHermesCall);
  EXPECT_TRUE(none.body["choices"][0]["message"]["tool_calls"].empty());
  EXPECT_TRUE(server.engine().submitted().back().params.constraint.is_none());
}

TEST(HttpToolCalls, RequiredIsConstrainedAndParsed) {
  const std::string output = R"([{"name": "add", "parameters": {"a": 1, "b": 2}}, {"name": "get_weather", "parameters": {"city": "Rome"}}])";
  TestServer server(script(output, 4));  // no flags needed
  auto c = server.client();
  auto reply = post_json(c, "/v1/chat/completions", tools_body(false, "required"));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& calls = reply.body["choices"][0]["message"]["tool_calls"];
  ASSERT_EQ(calls.size(), 2u) << reply.raw;
  EXPECT_EQ(calls[0]["function"]["name"], "add");
  EXPECT_EQ(calls[0]["function"]["arguments"], R"({"a": 1, "b": 2})");
  EXPECT_EQ(calls[1]["function"]["name"], "get_weather");
  EXPECT_EQ(reply.body["choices"][0]["finish_reason"], "tool_calls");
  const OutputConstraint constraint = server.engine().submitted().back().params.constraint;
  ASSERT_EQ(constraint.kind, OutputConstraint::Kind::json_schema);
  json schema = json::parse(constraint.spec);
  EXPECT_EQ(schema["type"], "array");
  EXPECT_EQ(schema["minItems"], 1);
  ASSERT_EQ(schema["items"]["anyOf"].size(), 2u);
  EXPECT_EQ(schema["items"]["anyOf"][0]["properties"]["name"]["enum"], json({"get_weather"}));
  EXPECT_EQ(schema["items"]["anyOf"][1]["properties"]["parameters"], kAdd["function"]["parameters"]);
  StreamedChat s = stream_chat(c, tools_body(true, "required"));
  ASSERT_EQ(s.calls.size(), 2u);
  EXPECT_EQ(s.calls[1]["arguments"], R"({"city": "Rome"})");
  EXPECT_EQ(s.finish_reason, "tool_calls");
}

TEST(HttpToolCalls, NamedFunctionIsConstrainedAndParsed) {
  TestServer server(script(R"({"city": "Lima"})", 2));
  auto c = server.client();
  json choice{{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  auto reply = post_json(c, "/v1/chat/completions", tools_body(false, choice));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& calls = reply.body["choices"][0]["message"]["tool_calls"];
  ASSERT_EQ(calls.size(), 1u) << reply.raw;
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(calls[0]["function"]["arguments"], R"({"city": "Lima"})");
  const OutputConstraint constraint = server.engine().submitted().back().params.constraint;
  ASSERT_EQ(constraint.kind, OutputConstraint::Kind::json_schema);
  EXPECT_EQ(json::parse(constraint.spec), kWeather["function"]["parameters"]);
  StreamedChat s = stream_chat(c, tools_body(true, choice));
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0]["name"], "get_weather");
  EXPECT_EQ(s.calls[0]["arguments"], R"({"city": "Lima"})");
  EXPECT_EQ(s.finish_reason, "tool_calls");
}

// parallel_tool_calls: false: at most one call, whole and streamed (vLLM); "required" asks the
// grammar for one.
TEST(HttpToolCalls, ParallelToolCallsFalseKeepsTheFirstCall) {
  const std::string two = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>\n"
                          "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>";
  TestServer server(script(two, 3), tools_config("hermes"));
  auto c = server.client();
  json body = tools_body(false);
  ASSERT_EQ(post_json(c, "/v1/chat/completions", body).body["choices"][0]["message"]["tool_calls"].size(), 2u);
  body["parallel_tool_calls"] = false;
  auto reply = post_json(c, "/v1/chat/completions", body);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& calls = reply.body["choices"][0]["message"]["tool_calls"];
  ASSERT_EQ(calls.size(), 1u) << reply.raw;
  EXPECT_EQ(calls[0]["function"]["name"], "add");
  EXPECT_EQ(reply.body["choices"][0]["finish_reason"], "tool_calls");
  json streamed = tools_body(true);
  streamed["parallel_tool_calls"] = false;
  StreamedChat s = stream_chat(c, streamed);
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0]["name"], "add");
  EXPECT_EQ(s.calls[0]["arguments"], R"({"a": 1, "b": 2})");
  EXPECT_EQ(s.finish_reason, "tool_calls");

  json required = tools_body(false, "required");
  required["parallel_tool_calls"] = false;
  ASSERT_EQ(post_json(c, "/v1/chat/completions", required).status, 200);
  EXPECT_EQ(json::parse(server.engine().submitted().back().params.constraint.spec)["maxItems"], 1);
  required["parallel_tool_calls"] = "no";
  auto bad = post_json(c, "/v1/chat/completions", required);
  expect_error_shape(bad, 400);
  EXPECT_EQ(bad.body["error"]["param"], "parallel_tool_calls");
}

// Arguments are the model's text: keys in its order (not sorted), its spacing and escapes.
TEST(HttpToolCalls, ArgumentsKeepTheModelsKeyOrderAndText) {
  const std::string args = R"({"zone": "CET",  "city": "Z\u00fcrich", "days": [3, 1], "b": {"y": 1, "a": 2}})";
  TestServer server(script("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + args + "}\n</tool_call>", 2),
                    tools_config("hermes"));
  auto c = server.client();
  auto reply = post_json(c, "/v1/chat/completions", tools_body(false));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(reply.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], args);
  StreamedChat s = stream_chat(c, tools_body(true));
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0]["arguments"], args);
}

TEST(HttpToolCalls, BadToolFieldsAre400NamingTheField) {
  TestServer server(script(""), tools_config("hermes"));
  auto c = server.client();
  struct Bad {
    std::function<void(json&)> edit;
    std::string param;
  };
  std::vector<Bad> cases = {
      {[](json& b) { b["tools"] = "get_weather"; }, "tools"},
      {[](json& b) { b["tools"][0]["type"] = "retrieval"; }, "tools[0].type"},
      {[](json& b) { b["tools"][1]["function"].erase("name"); }, "tools[1].function.name"},
      {[](json& b) { b["tools"][0]["function"]["parameters"] = "{}"; }, "tools[0].function.parameters"},
      {[](json& b) { b["tool_choice"] = "sometimes"; }, "tool_choice"},
      {[](json& b) { b["tool_choice"] = {{"type", "function"}, {"function", {{"name", "nope"}}}}; },
       "tool_choice.function.name"},
      {[](json& b) {
         b.erase("tools");
         b["tool_choice"] = "required";
       },
       "tool_choice"},
      {[](json& b) {
         b["messages"].push_back({{"role", "assistant"}, {"tool_calls", {{{"type", "function"}, {"function", {{"name", "f"}}}}}}});
       },
       "messages[1].tool_calls[0].function.arguments"},
      {[](json& b) {
         b["messages"][0]["tool_calls"] = json::array();
       },
       "messages[0].tool_calls"},
      {[](json& b) { b["messages"].push_back({{"role", "tool"}, {"tool_call_id", 7}, {"content", "x"}}); },
       "messages[1].tool_call_id"},
  };
  for (const Bad& bad : cases) {
    json body = tools_body(false);
    bad.edit(body);
    auto reply = post_json(c, "/v1/chat/completions", body);
    expect_error_shape(reply, 400);
    EXPECT_EQ(reply.body["error"]["param"], bad.param) << reply.raw;
  }
}

TEST(HttpToolCalls, ToolHistoryIsAccepted) {
  TestServer server(script("It is 21 degrees."), tools_config("hermes"));
  auto c = server.client();
  json body = tools_body(false);
  body["messages"].push_back({{"role", "assistant"},
                              {"content", nullptr},
                              {"tool_calls",
                               {{{"id", "call_0"},
                                 {"type", "function"},
                                 {"function", {{"name", "get_weather"}, {"arguments", "{\"city\": \"Zürich\"}"}}}}}}});
  body["messages"].push_back({{"role", "tool"}, {"tool_call_id", "call_0"}, {"content", "{\"temp\": 21}"}});
  auto reply = post_json(c, "/v1/chat/completions", body);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(reply.body["choices"][0]["message"]["content"], "It is 21 degrees.");
  EXPECT_EQ(reply.body["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(reply.body["choices"][0]["message"]["tool_calls"].empty());
}

}  // namespace
}  // namespace troupe::testing
