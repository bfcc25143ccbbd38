// POST /v1/responses over the FakeEngine: whole and streamed responses (reasoning item + message),
// the token budget, field errors, auth, the request timeout, engine failures, the request log.
#include <chrono>
#include <future>
#include <random>

#include "http/responses_request.hpp"
#include "tests/http/log_capture.hpp"
#include "tests/http/responses_events.hpp"
#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

using namespace std::chrono_literals;

Config r1_config() {
  Config config = test_config();
  config.reasoning_parser = "deepseek_r1";
  return config;
}

json request(bool stream, int64_t max_output_tokens = 100) {
  return json{{"model", "tiny"},
              {"instructions", "sys"},
              {"input", json::array({{{"role", "user"}, {"content", {{{"type", "input_text"}, {"text", "hi"}}}}}})},
              {"max_output_tokens", max_output_tokens},
              {"stream", stream}};
}

// Letters at 10 ms a token.
FakeEngineOptions slow_engine() {
  FakeEngineOptions options;
  options.step_delay = 10ms;
  return options;
}

// The rendered prompt of request(): the fake template's "<|role|>content\n" lines.
const std::string kPrompt = "<|system|>sys\n<|user|>hi\n<|assistant|>";

TEST(HttpResponses, WholeResponseWithReasoningItemAndMessage) {
  const std::string script = "<think>two and two</think>4";
  TestServer server({.script = script, .tokens_per_step = 3}, r1_config());
  auto c = server.client();
  JsonReply reply = post_json(c, "/v1/responses", request(false));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& r = reply.body;
  EXPECT_EQ(r["id"].get<std::string>().rfind("resp_", 0), 0u) << r["id"];
  EXPECT_EQ(r["object"], "response");
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["model"], "tiny");
  EXPECT_EQ(r["instructions"], "sys");
  EXPECT_EQ(r["max_output_tokens"], 100);
  ASSERT_EQ(r["output"].size(), 2u) << r;
  const json& reasoning = r["output"][0];
  EXPECT_EQ(reasoning["type"], "reasoning");
  EXPECT_EQ(reasoning["id"].get<std::string>().rfind("rs_", 0), 0u);
  EXPECT_EQ(reasoning["content"][0]["text"], "two and two");
  const json& message = r["output"][1];
  EXPECT_EQ(message["type"], "message");
  EXPECT_EQ(message["role"], "assistant");
  EXPECT_EQ(message["status"], "completed");
  EXPECT_EQ(message["id"].get<std::string>().rfind("msg_", 0), 0u);
  EXPECT_EQ(message["content"][0]["type"], "output_text");
  EXPECT_EQ(message["content"][0]["text"], "4");
  EXPECT_EQ(r["usage"]["input_tokens"], int64_t(kPrompt.size()));
  EXPECT_EQ(r["usage"]["output_tokens"], int64_t(script.size()));
  EXPECT_EQ(r["usage"]["output_tokens_details"]["reasoning_tokens"], int64_t(std::string("two and two").size()));
  EXPECT_EQ(r["usage"]["total_tokens"], int64_t(kPrompt.size() + script.size()));
  // The engine got the rendered messages and the budget.
  const auto submitted = server.engine().submitted();
  ASSERT_EQ(submitted.size(), 1u);
  EXPECT_EQ(std::string(submitted[0].prompt_ids.begin(), submitted[0].prompt_ids.end()), kPrompt);
  EXPECT_EQ(submitted[0].params.max_tokens, 100);
  EXPECT_TRUE(server.engine().wait_until_idle(2s));
}

TEST(HttpResponses, StreamedEventsCarryTheSameText) {
  for (int per_step : {1, 4}) {
    TestServer server({.script = "<think>two and two</think>four", .tokens_per_step = per_step}, r1_config());
    auto c = server.client();
    auto res = c.Post("/v1/responses", request(true).dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
    EXPECT_EQ(res->body.find("[DONE]"), std::string::npos);
    std::vector<json> events = parse_response_events(res->body);
    ASSERT_GE(events.size(), 10u) << res->body;
    std::string reasoning, text;
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i]["sequence_number"], int64_t(i));
      if (events[i]["type"] == "response.reasoning_text.delta") reasoning += events[i]["delta"].get<std::string>();
      if (events[i]["type"] == "response.output_text.delta") text += events[i]["delta"].get<std::string>();
    }
    EXPECT_EQ(events.front()["type"], "response.created");
    EXPECT_EQ(events[1]["type"], "response.in_progress");
    EXPECT_EQ(reasoning, "two and two");
    EXPECT_EQ(text, "four");
    const json& done = events.back();
    ASSERT_EQ(done["type"], "response.completed") << res->body;
    EXPECT_EQ(done["response"]["id"], events.front()["response"]["id"]);
    EXPECT_EQ(done["response"]["output"][1]["content"][0]["text"], "four");
    EXPECT_EQ(done["response"]["usage"]["output_tokens"], 30);
    EXPECT_TRUE(server.engine().wait_until_idle(2s));
  }
}

TEST(HttpResponses, TokenBudgetMakesItIncomplete) {
  TestServer server;  // no script: letters until max_tokens
  auto c = server.client();
  JsonReply reply = post_json(c, "/v1/responses", request(false, 5));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(reply.body["status"], "incomplete");
  EXPECT_EQ(reply.body["incomplete_details"]["reason"], "max_output_tokens");
  ASSERT_EQ(reply.body["output"].size(), 1u);  // no reasoning parser: the message alone
  EXPECT_EQ(reply.body["output"][0]["status"], "incomplete");
  EXPECT_EQ(reply.body["output"][0]["content"][0]["text"].get<std::string>().size(), 5u);
  EXPECT_EQ(reply.body["usage"]["output_tokens"], 5);

  auto res = c.Post("/v1/responses", request(true, 5).dump(), "application/json");
  ASSERT_TRUE(res);
  std::vector<json> events = parse_response_events(res->body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "response.incomplete");
  EXPECT_EQ(events.back()["response"]["output"][0]["content"][0]["text"],
            reply.body["output"][0]["content"][0]["text"]);

  // A string input and no max_output_tokens: the budget is the model's room.
  JsonReply plain = post_json(c, "/v1/responses", json{{"model", "tiny"}, {"input", "hello"}});
  ASSERT_EQ(plain.status, 200) << plain.raw;
  EXPECT_TRUE(plain.body["max_output_tokens"].is_null());
  EXPECT_EQ(server.engine().submitted().back().params.max_tokens,
            256 - int64_t(std::string("<|user|>hello\n<|assistant|>").size()));
}

TEST(HttpResponses, BadFieldsModelAndAuth) {
  Config config = test_config();
  config.api_key = "sk-test";
  TestServer server({}, config);
  auto c = server.client();
  json body = request(false);
  body["input"][0]["content"][0] = {{"type", "input_image"}, {"image_url", "http://x/y.png"}};
  JsonReply image = post_json(c, "/v1/responses", body);
  expect_error_shape(image, 400);
  EXPECT_EQ(image.body["error"]["param"], "input[0].content[0]");
  body = request(false);
  body["previous_response_id"] = "resp_123";
  JsonReply unknown = post_json(c, "/v1/responses", body);
  expect_error_shape(unknown, 404);
  EXPECT_EQ(unknown.body["error"]["param"], "previous_response_id");
  body = request(false);
  body["max_output_tokens"] = -3;
  JsonReply budget = post_json(c, "/v1/responses", body);
  expect_error_shape(budget, 400);
  EXPECT_EQ(budget.body["error"]["param"], "max_output_tokens");
  body = request(false);
  body["model"] = "other";
  expect_error_shape(post_json(c, "/v1/responses", body), 404);
  expect_error_shape(post_json(c, "/v1/responses", std::string("{not json")), 400);
  // More than the context holds: the engine's check, named as this route's field.
  body = request(false, 1000);
  JsonReply too_long = post_json(c, "/v1/responses", body);
  expect_error_shape(too_long, 400);
  EXPECT_EQ(too_long.body["error"]["param"], "max_output_tokens") << too_long.raw;

  httplib::Client anonymous("127.0.0.1", server.port());
  expect_error_shape(post_json(anonymous, "/v1/responses", request(false)), 401);
  EXPECT_TRUE(server.engine().submitted().empty());
}

TEST(HttpResponses, TimeoutAndEngineFailureEndStreamsWithFailed) {
  Config config = test_config();
  config.request_timeout_s = 0.2;
  TestServer slow(slow_engine(), config);
  auto c = slow.client();
  expect_error_shape(post_json(c, "/v1/responses", request(false, 150)), 504);
  auto res = c.Post("/v1/responses", request(true, 150).dump(), "application/json");
  ASSERT_TRUE(res);
  std::vector<json> events = parse_response_events(res->body);
  ASSERT_GE(events.size(), 2u) << res->body;
  EXPECT_EQ(events[events.size() - 2]["type"], "error");
  EXPECT_EQ(events.back()["type"], "response.failed");
  EXPECT_NE(events.back()["response"]["error"]["message"].get<std::string>().find("request-timeout"),
            std::string::npos);
  EXPECT_TRUE(slow.engine().wait_until_idle(2s));

  TestServer failing({.script = "", .fail_after = 2});
  auto f = failing.client();
  expect_error_shape(post_json(f, "/v1/responses", request(false, 10)), 500);
  res = f.Post("/v1/responses", request(true, 10).dump(), "application/json");
  ASSERT_TRUE(res);
  events = parse_response_events(res->body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "response.failed") << res->body;
  EXPECT_EQ(events.back()["response"]["status"], "failed");
}

TEST(HttpResponses, DrainAbortCancelsAndAHangUpFreesTheGeneration) {
  TestServer server(slow_engine());
  auto streamed = std::async(std::launch::async, [&server] {
    auto c = server.client();
    return c.Post("/v1/responses", request(true, 150).dump(), "application/json");
  });
  auto plain = std::async(std::launch::async, [&server] {
    auto c = server.client();
    return post_json(c, "/v1/responses", request(false, 150));
  });
  for (int i = 0; i < 300 && server.engine().stats().num_running < 2; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(server.engine().stats().num_running, 2);
  EXPECT_FALSE(server.server().drain(200ms));  // ~1.5 s of work: the abort comes first
  auto res = streamed.get();
  ASSERT_TRUE(res);
  std::vector<json> events = parse_response_events(res->body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "response.incomplete") << res->body.substr(res->body.size() - 300);
  EXPECT_EQ(events.back()["response"]["status"], "cancelled");
  JsonReply answered = plain.get();
  ASSERT_EQ(answered.status, 200) << answered.raw;
  EXPECT_EQ(answered.body["status"], "cancelled");
  EXPECT_TRUE(server.engine().wait_until_idle(2s));
}

TEST(HttpResponses, StreamClientHangingUpCancelsItsGeneration) {
  TestServer server(slow_engine());
  {
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(10, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/responses";
    req.body = request(true, 200).dump();  // 2 s of tokens at 10 ms a step
    req.set_header("Content-Type", "application/json");
    int num_received = 0;
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++num_received < 4; };
    c.send(req);
    EXPECT_GE(num_received, 4);
  }
  EXPECT_TRUE(server.engine().wait_until_idle(5s)) << "the generation outlived its client";
  EXPECT_LT(server.engine().stats().num_generation_tokens_total, 150);
}

TEST(HttpResponses, JsonSchemaFormatReachesTheEngineAndIgnoredFieldsAreLogged) {
  LogCapture capture("http");
  TestServer server({.script = "{\"n\": 4}"});
  auto c = server.client();
  json schema{{"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}}}, {"required", {"n"}}};
  json body = request(false);
  body["text"] = {{"format", {{"type", "json_schema"}, {"name", "answer"}, {"schema", schema}, {"strict", true}}}};
  body["truncation"] = "disabled";
  body["frobnicate"] = true;
  JsonReply reply = post_json(c, "/v1/responses", body);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(reply.body["text"]["format"]["name"], "answer");
  EXPECT_EQ(reply.body["output"][0]["content"][0]["text"], "{\"n\": 4}");
  const auto submitted = server.engine().submitted();
  ASSERT_EQ(submitted.size(), 1u);
  EXPECT_EQ(submitted[0].params.constraint.kind, OutputConstraint::Kind::json_schema);
  EXPECT_EQ(json::parse(submitted[0].params.constraint.spec), schema);
  bool logged = false;
  for (const std::string& line : capture.lines())
    logged |= line.find("ignores the fields frobnicate (unknown), truncation") != std::string::npos;
  EXPECT_TRUE(logged);
}

TEST(HttpResponses, JunkInEveryFieldGets4xxAndNeverReachesTheEngine) {
  TestServer server;
  auto c = server.client();
  c.set_keep_alive(true);
  std::mt19937 rng(2026);
  const std::vector<json> junk = {true, -1, 1e308, "str", json::array(), json::object(), json::array({1, "a", nullptr}),
                                  18446744073709551615ull, json::array({json::object()}),
                                  json::array({{{"role", "user"}, {"content", {{{"type", "input_file"}}}}}})};
  // Each field with values that are surely wrong for it (a legal value is skipped).
  const std::vector<std::string> fields = {"model", "input", "instructions", "max_output_tokens", "temperature",
                                           "top_p", "stream", "text", "store", "metadata", "user", "reasoning",
                                           "tools", "previous_response_id", "background", "truncation"};
  int num_checked = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string field = fields[rng() % fields.size()];
    json body = request(false, 4);
    body[field] = junk[rng() % junk.size()];
    std::string param;
    if (http::parse_responses_request(body, param).ok()) continue;  // happened to be legal (an empty list of tools)
    JsonReply reply = post_json(c, "/v1/responses", body);
    ASSERT_EQ(reply.status, 400) << body.dump() << " -> " << reply.raw;
    EXPECT_EQ(reply.body["error"]["param"].get<std::string>().rfind(field, 0), 0u) << body.dump() << " -> " << reply.raw;
    ++num_checked;
  }
  EXPECT_GT(num_checked, 200);
  EXPECT_TRUE(server.engine().submitted().empty());
}

TEST(HttpResponses, PreviousResponseIdContinuesAStoredConversation) {
  TestServer server({.script = "ANSWER"});
  auto c = server.client();
  JsonReply first = post_json(c, "/v1/responses", request(false));
  ASSERT_EQ(first.status, 200) << first.raw;
  EXPECT_EQ(first.body["store"], true);
  // A streamed follow-up with new instructions (the earlier ones are not carried over, as OpenAI).
  json second = {{"model", "tiny"}, {"instructions", "new"}, {"input", "again"}, {"stream", true},
                 {"previous_response_id", first.body["id"]}};
  auto res = c.Post("/v1/responses", second.dump(), "application/json");
  ASSERT_TRUE(res);
  std::vector<json> events = parse_response_events(res->body);
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back()["type"], "response.completed") << res->body;
  EXPECT_EQ(events.back()["response"]["previous_response_id"], first.body["id"]);
  // The streamed one is stored too: a third turn continues both, and store: false is not kept.
  json third = {{"model", "tiny"}, {"input", "last"}, {"store", false},
                {"previous_response_id", events.back()["response"]["id"]}};
  JsonReply last = post_json(c, "/v1/responses", third);
  ASSERT_EQ(last.status, 200) << last.raw;
  EXPECT_EQ(last.body["store"], false);
  const auto submitted = server.engine().submitted();
  ASSERT_EQ(submitted.size(), 3u);
  auto prompt_of = [&](size_t i) { return std::string(submitted[i].prompt_ids.begin(), submitted[i].prompt_ids.end()); };
  EXPECT_EQ(prompt_of(1), "<|system|>new\n<|user|>hi\n<|assistant|>ANSWER\n<|user|>again\n<|assistant|>");
  EXPECT_EQ(prompt_of(2), "<|user|>hi\n<|assistant|>ANSWER\n<|user|>again\n<|assistant|>ANSWER\n<|user|>last\n"
                          "<|assistant|>");
  third["previous_response_id"] = last.body["id"];
  JsonReply after_unstored = post_json(c, "/v1/responses", third);
  expect_error_shape(after_unstored, 404);
  EXPECT_EQ(after_unstored.body["error"]["param"], "previous_response_id");
}

Config tools_config() {
  Config config = test_config();
  config.enable_auto_tool_choice = true;
  config.tool_call_parser = "hermes";
  return config;
}

const json kWeatherTool = {{"type", "function"},
                           {"name", "get_weather"},
                           {"description", "Weather in a city"},
                           {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}};
// Keys not sorted: the arguments come back as the model wrote them.
const std::string kArgs = R"({"zone": "CET", "city": "Oslo"})";
const std::string kCallScript = "Let me look.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + kArgs + "}\n</tool_call>";

json tools_request(bool stream) {
  return json{{"model", "tiny"}, {"input", "weather in Oslo?"}, {"tools", {kWeatherTool}}, {"stream", stream}};
}

// Function tools: the model's call becomes a function_call item after the message, whole and as
// its events; the tools and tool_choice are echoed.
TEST(HttpResponses, FunctionToolCallsBecomeFunctionCallItems) {
  TestServer server({.script = kCallScript, .tokens_per_step = 3}, tools_config());
  auto c = server.client();
  JsonReply reply = post_json(c, "/v1/responses", tools_request(false));
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& r = reply.body;
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["tools"], json::array({kWeatherTool}));
  EXPECT_EQ(r["tool_choice"], "auto");
  EXPECT_EQ(r["parallel_tool_calls"], true);
  ASSERT_EQ(r["output"].size(), 2u) << r;
  EXPECT_EQ(r["output"][0]["type"], "message");
  EXPECT_EQ(r["output"][0]["content"][0]["text"], "Let me look.");
  const json& call = r["output"][1];
  EXPECT_EQ(call["type"], "function_call");
  EXPECT_EQ(call["id"].get<std::string>().rfind("fc_", 0), 0u) << call;
  EXPECT_FALSE(call["call_id"].get<std::string>().empty());
  EXPECT_EQ(call["name"], "get_weather");
  EXPECT_EQ(call["arguments"], kArgs);
  EXPECT_EQ(call["status"], "completed");

  auto res = c.Post("/v1/responses", tools_request(true).dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  std::vector<json> events = parse_response_events(res->body);
  std::string arguments;
  std::vector<std::string> call_events;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i]["sequence_number"], int64_t(i));
    const std::string type = events[i]["type"];
    const bool is_call = type.find("function_call") != std::string::npos ||
                         (events[i].contains("item") && events[i]["item"]["type"] == "function_call");
    if (is_call) call_events.push_back(type);
    if (type == "response.function_call_arguments.delta") arguments += events[i]["delta"].get<std::string>();
    if (type == "response.function_call_arguments.done") {
      EXPECT_EQ(events[i]["arguments"], kArgs);
      EXPECT_EQ(events[i]["output_index"], 1);
    }
    if (type == "response.output_item.added" && events[i]["item"]["type"] == "function_call") {
      EXPECT_EQ(events[i]["item"]["status"], "in_progress");
      EXPECT_EQ(events[i]["item"]["name"], "get_weather");
    }
  }
  EXPECT_EQ(arguments, kArgs);
  ASSERT_GE(call_events.size(), 4u) << res->body;
  EXPECT_EQ(call_events.front(), "response.output_item.added");
  EXPECT_EQ(call_events[call_events.size() - 2], "response.function_call_arguments.done");
  EXPECT_EQ(call_events.back(), "response.output_item.done");
  const json& done = events.back();
  ASSERT_EQ(done["type"], "response.completed") << res->body;
  ASSERT_EQ(done["response"]["output"].size(), 2u);
  EXPECT_EQ(done["response"]["output"][1]["arguments"], kArgs);
  EXPECT_TRUE(done["response"]["output"][1]["call_id"].is_string());
}

// tool_choice: a named function is forced by the grammar (its parameters' schema), required too;
// auto without the server's flags is refused as on chat; parallel_tool_calls false keeps one call.
TEST(HttpResponses, ToolChoiceAndParallelToolCalls) {
  TestServer server({.script = R"({"city": "Lima"})"});
  auto c = server.client();
  json named = tools_request(false);
  named["tool_choice"] = {{"type", "function"}, {"name", "get_weather"}};
  JsonReply reply = post_json(c, "/v1/responses", named);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  ASSERT_EQ(reply.body["output"].size(), 1u) << reply.raw;
  EXPECT_EQ(reply.body["output"][0]["type"], "function_call");
  EXPECT_EQ(reply.body["output"][0]["arguments"], R"({"city": "Lima"})");
  EXPECT_EQ(reply.body["tool_choice"], named["tool_choice"]);
  const OutputConstraint constraint = server.engine().submitted().back().params.constraint;
  ASSERT_EQ(constraint.kind, OutputConstraint::Kind::json_schema);
  EXPECT_EQ(json::parse(constraint.spec), kWeatherTool["parameters"]);
  json required = tools_request(false);
  required["tool_choice"] = "required";
  required["parallel_tool_calls"] = false;
  ASSERT_EQ(post_json(c, "/v1/responses", required).status, 200);
  EXPECT_EQ(json::parse(server.engine().submitted().back().params.constraint.spec)["maxItems"], 1);
  JsonReply no_flags = post_json(c, "/v1/responses", tools_request(false));
  expect_error_shape(no_flags, 400);
  EXPECT_EQ(no_flags.body["error"]["param"], "tool_choice");

  const std::string two = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"A\"}}\n</tool_call>"
                          "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"B\"}}\n</tool_call>";
  TestServer parallel({.script = two, .tokens_per_step = 4}, tools_config());
  auto p = parallel.client();
  JsonReply both = post_json(p, "/v1/responses", tools_request(false));
  ASSERT_EQ(both.status, 200) << both.raw;
  ASSERT_EQ(both.body["output"].size(), 2u) << both.raw;  // two calls, no message
  EXPECT_EQ(both.body["output"][1]["arguments"], R"({"city": "B"})");
  EXPECT_NE(both.body["output"][0]["id"], both.body["output"][1]["id"]);
  json one = tools_request(true);
  one["parallel_tool_calls"] = false;
  auto res = p.Post("/v1/responses", one.dump(), "application/json");
  ASSERT_TRUE(res);
  std::vector<json> events = parse_response_events(res->body);
  ASSERT_EQ(events.back()["type"], "response.completed") << res->body;
  ASSERT_EQ(events.back()["response"]["output"].size(), 1u) << res->body;
  EXPECT_EQ(events.back()["response"]["parallel_tool_calls"], false);
}

// The next turn: function_call and function_call_output items render as the assistant's call and
// the tool message; a stored response's calls continue through previous_response_id.
TEST(HttpResponses, FunctionCallOutputsContinueTheConversation) {
  TestServer server({.script = kCallScript, .tokens_per_step = 5}, tools_config());
  auto c = server.client();
  JsonReply first = post_json(c, "/v1/responses", tools_request(false));
  ASSERT_EQ(first.status, 200) << first.raw;
  const json call = first.body["output"][1];
  json replay = tools_request(false);
  replay["input"] = json::array({{{"role", "user"}, {"content", "weather in Oslo?"}},
                                 call,
                                 {{"type", "function_call_output"}, {"call_id", call["call_id"]}, {"output", "sunny"}}});
  ASSERT_EQ(post_json(c, "/v1/responses", replay).status, 200);
  json continued = tools_request(false);
  continued["previous_response_id"] = first.body["id"];
  continued["input"] = json::array({{{"type", "function_call_output"}, {"call_id", call["call_id"]}, {"output", "sunny"}}});
  ASSERT_EQ(post_json(c, "/v1/responses", continued).status, 200);
  const auto submitted = server.engine().submitted();
  ASSERT_EQ(submitted.size(), 3u);
  auto prompt_of = [&](size_t i) { return std::string(submitted[i].prompt_ids.begin(), submitted[i].prompt_ids.end()); };
  EXPECT_EQ(prompt_of(1), "<|user|>weather in Oslo?\n<|assistant|><call get_weather " + kArgs + ">\n<|tool|>sunny\n<|assistant|>");
  EXPECT_EQ(prompt_of(2), "<|user|>weather in Oslo?\n<|assistant|>Let me look.<call get_weather " + kArgs +
                              ">\n<|tool|>sunny\n<|assistant|>");
}

TEST(HttpResponses, RequestLogAndMetricsCountIt) {
  LogCapture capture("request");
  TestServer server;
  auto c = server.client();
  httplib::Headers headers{{"X-Request-Id", "my-req-1"}};
  auto res = c.Post("/v1/responses", headers, request(false, 3).dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Request-Id"), "my-req-1");
  std::string line;
  for (int i = 0; i < 100 && line.empty(); ++i) {
    for (const std::string& l : capture.lines())
      if (l.find("my-req-1") != std::string::npos) line = l;
    if (line.empty()) std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(line.find("/v1/responses"), std::string::npos) << line;
  EXPECT_NE(line.find("length"), std::string::npos) << line;
  std::string metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("troupe:request_success_total{model_name=\"tiny\",finished_reason=\"length\"} 1"), std::string::npos) << metrics;
}

}  // namespace
}  // namespace troupe::testing
