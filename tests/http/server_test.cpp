// Every endpoint and error case of the HTTP server, over a real socket and the FakeEngine.
#include <map>
#include <regex>
#include <sstream>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

json chat_body(const std::string& content, int64_t max_tokens = 5) {
  return json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", content}}}}, {"max_tokens", max_tokens}};
}

std::string letters(int64_t seed, int64_t n) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) s += char(FakeEngine::letter(seed, i));
  return s;
}

TEST(HttpServer, HealthVersionModels) {
  TestServer server;
  auto c = server.client();
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto version = c.Get("/version");
  ASSERT_TRUE(version);
  EXPECT_EQ(version->status, 200);
  EXPECT_TRUE(json::parse(version->body)["version"].is_string());
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  json m = json::parse(models->body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "tiny");
  EXPECT_EQ(m["data"][0]["object"], "model");
  EXPECT_EQ(m["data"][0]["max_model_len"], server.engine().max_model_len());
}

TEST(HttpServer, NotReadyGives503WithRetryAfter) {
  TestServer server;
  server.engine().set_ready(false);
  auto c = server.client();
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(health->get_header_value("Retry-After"), "1");
  auto reply = post_json(c, "/v1/chat/completions", chat_body("hi"));
  expect_error_shape(reply, 503);
  // Loading is no reason to restart the process: liveness stays 200.
  auto live = c.Get("/live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_EQ(json::parse(live->body)["status"], "alive");
}

TEST(HttpServer, ChatCompletionShapeAndUsage) {
  TestServer server;
  auto c = server.client();
  json body = chat_body("hello", 5);
  body["seed"] = 3;
  auto reply = post_json(c, "/v1/chat/completions", body);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& r = reply.body;
  EXPECT_EQ(r["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_TRUE(r["created"].is_number_integer());
  EXPECT_EQ(r["model"], "tiny");
  ASSERT_EQ(r["choices"].size(), 1u);
  const json& choice = r["choices"][0];
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_EQ(choice["message"]["content"], letters(3, 5));
  EXPECT_FALSE(choice["message"].contains("reasoning_content"));  // parser off
  EXPECT_TRUE(choice["logprobs"].is_null());
  EXPECT_EQ(choice["finish_reason"], "length");
  // The prompt is the rendered template; /tokenize gives its length.
  auto tok = post_json(c, "/tokenize", json{{"messages", body["messages"]}});
  ASSERT_EQ(tok.status, 200) << tok.raw;
  EXPECT_EQ(r["usage"]["prompt_tokens"], tok.body["count"]);
  EXPECT_EQ(r["usage"]["completion_tokens"], 5);
  EXPECT_EQ(r["usage"]["total_tokens"], tok.body["count"].get<int64_t>() + 5);
  ASSERT_EQ(server.engine().submitted().size(), 1u);
  EXPECT_EQ(server.engine().submitted()[0].params.max_tokens, 5);
  EXPECT_EQ(server.engine().submitted()[0].params.seed, 3);
}

TEST(HttpServer, SamplingParametersReachTheEngine) {
  TestServer server;
  auto c = server.client();
  json body = chat_body("x", 1);
  body.erase("max_tokens");
  body["max_completion_tokens"] = 4;
  body["temperature"] = 0.5;
  body["top_p"] = 0.9;
  body["top_k"] = 7;
  body["min_p"] = 0.05;
  body["presence_penalty"] = 0.5;
  body["frequency_penalty"] = -0.5;
  body["repetition_penalty"] = 1.1;
  body["ignore_eos"] = true;
  ASSERT_EQ(post_json(c, "/v1/chat/completions", body).status, 200);
  const SamplingParams p = server.engine().submitted().at(0).params;  // a copy: submitted() returns by value
  EXPECT_EQ(p.max_tokens, 4);
  EXPECT_DOUBLE_EQ(p.temperature, 0.5);
  EXPECT_DOUBLE_EQ(p.top_p, 0.9);
  EXPECT_EQ(p.top_k, 7);
  EXPECT_DOUBLE_EQ(p.min_p, 0.05);
  EXPECT_DOUBLE_EQ(p.presence_penalty, 0.5);
  EXPECT_DOUBLE_EQ(p.frequency_penalty, -0.5);
  EXPECT_DOUBLE_EQ(p.repetition_penalty, 1.1);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.logprobs, -1);
}

TEST(HttpServer, CompletionWithTextAndTokenIdPrompts) {
  TestServer server({.script = "the end"});
  auto c = server.client();
  auto text = post_json(c, "/v1/completions", json{{"model", "tiny"}, {"prompt", "abc"}, {"max_tokens", 50}});
  ASSERT_EQ(text.status, 200) << text.raw;
  EXPECT_EQ(text.body["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(text.body["object"], "text_completion");
  EXPECT_EQ(text.body["choices"][0]["text"], "the end");
  EXPECT_EQ(text.body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(text.body["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(text.body["usage"]["completion_tokens"], 7);
  auto ids = post_json(c, "/v1/completions", json{{"model", "tiny"}, {"prompt", {97, 98}}, {"max_tokens", 3}});
  ASSERT_EQ(ids.status, 200) << ids.raw;
  EXPECT_EQ(ids.body["choices"][0]["text"], "the");
  EXPECT_EQ(ids.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(server.engine().submitted().at(1).prompt_ids, (std::vector<int32_t>{97, 98}));
  // Without max_tokens a completion gets 16 tokens at most (ignore_eos keeps the script cycling).
  auto dflt = post_json(c, "/v1/completions", json{{"model", "tiny"}, {"prompt", "a"}, {"ignore_eos", true}});
  ASSERT_EQ(dflt.status, 200) << dflt.raw;
  EXPECT_EQ(dflt.body["usage"]["completion_tokens"], 16);
}

TEST(HttpServer, NGivesNChoicesWithDerivedSeeds) {
  TestServer server;
  auto c = server.client();
  json body = chat_body("hi", 4);
  body["n"] = 2;
  body["seed"] = 10;
  auto reply = post_json(c, "/v1/chat/completions", body);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  ASSERT_EQ(reply.body["choices"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(reply.body["choices"][i]["index"], i);
    EXPECT_EQ(reply.body["choices"][i]["message"]["content"], letters(10 + i, 4));
  }
  EXPECT_EQ(reply.body["usage"]["completion_tokens"], 8);
  auto submitted = server.engine().submitted();
  ASSERT_EQ(submitted.size(), 2u);
  EXPECT_NE(submitted[0].request_id, submitted[1].request_id);
}

TEST(HttpServer, StopStringEndsAndCancelsTheRequest) {
  TestServer server({.script = "hello STOP world", .step_delay = std::chrono::milliseconds(1)});
  auto c = server.client();
  json body = chat_body("hi", 100);
  body["stop"] = {"nope", "STOP"};
  auto reply = post_json(c, "/v1/chat/completions", body);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(reply.body["choices"][0]["message"]["content"], "hello ");
  EXPECT_EQ(reply.body["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(server.engine().wait_until_idle(std::chrono::seconds(5)));
}

TEST(HttpServer, ReasoningSplitNonStreaming) {
  Config config = test_config();
  config.reasoning_parser = "deepseek_r1";
  {
    TestServer server({.script = "<think>weigh it</think>forty-two"}, config);
    auto c = server.client();
    auto reply = post_json(c, "/v1/chat/completions", chat_body("q", 100));
    ASSERT_EQ(reply.status, 200) << reply.raw;
    EXPECT_EQ(reply.body["choices"][0]["message"]["reasoning_content"], "weigh it");
    EXPECT_EQ(reply.body["choices"][0]["message"]["content"], "forty-two");
  }
  {
    // The template opened <think>: the output starts inside it.
    TestServer server({.script = "weigh it</think>forty-two"}, config, /*opens_think=*/true);
    auto c = server.client();
    auto reply = post_json(c, "/v1/chat/completions", chat_body("q", 100));
    ASSERT_EQ(reply.status, 200) << reply.raw;
    EXPECT_EQ(reply.body["choices"][0]["message"]["reasoning_content"], "weigh it");
    EXPECT_EQ(reply.body["choices"][0]["message"]["content"], "forty-two");
  }
}

TEST(HttpServer, ChatAndCompletionLogprobs) {
  TestServer server;
  auto c = server.client();
  json body = chat_body("hi", 3);
  body["logprobs"] = true;
  body["top_logprobs"] = 2;
  auto reply = post_json(c, "/v1/chat/completions", body);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& content = reply.body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 3u);
  EXPECT_EQ(content[0]["token"], std::string(1, char(FakeEngine::letter(-1, 0))));
  EXPECT_FLOAT_EQ(content[0]["logprob"].get<float>(), -1.0f);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 2u);
  auto comp = post_json(c, "/v1/completions", json{{"model", "tiny"}, {"prompt", "x"}, {"max_tokens", 2}, {"logprobs", 1}});
  ASSERT_EQ(comp.status, 200) << comp.raw;
  const json& lp = comp.body["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 2u);
  EXPECT_EQ(lp["token_logprobs"].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 1u);
  EXPECT_EQ(lp["text_offset"][1], 1);
}

TEST(HttpServer, TokenizeAndDetokenizeRoundTrip) {
  TestServer server;
  auto c = server.client();
  auto tok = post_json(c, "/tokenize", json{{"model", "tiny"}, {"prompt", "héllo"}});
  ASSERT_EQ(tok.status, 200) << tok.raw;
  EXPECT_EQ(tok.body["count"], std::string("héllo").size());
  EXPECT_EQ(tok.body["max_model_len"], server.engine().max_model_len());
  auto detok = post_json(c, "/detokenize", json{{"tokens", tok.body["tokens"]}});
  ASSERT_EQ(detok.status, 200) << detok.raw;
  EXPECT_EQ(detok.body["prompt"], "héllo");
  expect_error_shape(post_json(c, "/detokenize", json{{"tokens", {1, 999}}}), 400);
  expect_error_shape(post_json(c, "/tokenize", json{{"prompt", 5}}), 400);
  expect_error_shape(post_json(c, "/tokenize", json{{"model", "other"}, {"prompt", "x"}}), 404);
}

TEST(HttpServer, EveryBadRequestGetsAnOpenAIError) {
  TestServer server({.max_model_len = 64});
  auto c = server.client();
  const std::string user = R"("messages":[{"role":"user","content":"hi"}])";
  struct Case {
    std::string path;
    std::string body;
    int status;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", "{not json", 400},
      {"/v1/chat/completions", "", 400},
      {"/v1/chat/completions", "[1]", 400},
      {"/v1/chat/completions", R"({"model":"other",)" + user + "}", 404},
      {"/v1/chat/completions", R"({"model":"tiny",)" + user + R"(,"max_tokens":-3})", 400},
      {"/v1/chat/completions", R"({"model":"tiny",)" + user + R"(,"max_tokens":"ten"})", 400},
      {"/v1/chat/completions", R"({"model":"tiny",)" + user + R"(,"temperature":-1})", 400},
      {"/v1/chat/completions", R"({"model":"tiny",)" + user + R"(,"top_k":-2})", 400},
      {"/v1/chat/completions", R"({"model":"tiny",)" + user + R"(,"n":1e400})", 400},
      {"/v1/chat/completions", R"({"model":"tiny",)" + user + R"(,"max_tokens":60})", 400},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"robot","content":"x"}]})", 400},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[]})", 400},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"RAISE"}]})", 400},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":")" + std::string(80, 'x') + "\"}]}", 400},
      {"/v1/chat/completions", R"({"model":"tiny",)" + user + R"(,"stream_options":3})", 400},
      {"/v1/completions", R"({"model":"tiny","prompt":[]})", 400},
      {"/v1/completions", R"({"model":"tiny","prompt":[1,-2]})", 400},
      {"/v1/completions", R"({"model":"tiny","prompt":[1,300]})", 400},
      {"/v1/completions", R"({"model":"tiny","prompt":{"a":1}})", 400},
      {"/v1/completions", R"({"model":"tiny","prompt":"x","logprobs":99})", 400},
      {"/v1/completions", R"({"model":"tiny","prompt":"x","stop":{"a":1}})", 400},
      {"/v1/no/such/route", "{}", 404},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.path + " " + k.body.substr(0, 120));
    std::string message = expect_error_shape(post_json(c, k.path, k.body), k.status);
  }
  auto get_post_route = c.Get("/v1/chat/completions");
  ASSERT_TRUE(get_post_route);
  EXPECT_EQ(get_post_route->status, 404);
  EXPECT_TRUE(json::parse(get_post_route->body, nullptr, false).contains("error"));
  EXPECT_TRUE(server.engine().submitted().empty());
}

TEST(HttpServer, ApiKeyGuardsEveryRouteButHealthAndMetrics) {
  Config config = test_config();
  config.api_key = "sk-test";
  TestServer server({}, config);
  httplib::Client anonymous("127.0.0.1", server.port());
  httplib::Client wrong("127.0.0.1", server.port());
  wrong.set_bearer_token_auth("sk-wrong");
  for (httplib::Client* c : {&anonymous, &wrong}) {
    for (const char* path : {"/v1/models", "/version", "/nope"}) {
      auto res = c->Get(path);
      ASSERT_TRUE(res) << path;
      EXPECT_EQ(res->status, 401) << path;
      EXPECT_TRUE(json::parse(res->body, nullptr, false).contains("error")) << path;
    }
    expect_error_shape(post_json(*c, "/v1/chat/completions", chat_body("x")), 401);
    auto health = c->Get("/health");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    EXPECT_EQ(c->Get("/metrics")->status, 200);  // open, as vLLM's; --protect-metrics closes it
  }
  auto ok = server.client();  // carries the key
  EXPECT_EQ(ok.Get("/v1/models")->status, 200);
  EXPECT_EQ(post_json(ok, "/v1/chat/completions", chat_body("x")).status, 200);
}

TEST(HttpServer, OversizedBodyGets413) {
  TestServer server;  // max_body_bytes = 64 KiB
  auto c = server.client();
  std::string big = R"({"model":"tiny","prompt":")" + std::string(100000, 'a') + "\"}";
  expect_error_shape(post_json(c, "/v1/completions", big), 413);
  EXPECT_EQ(c.Get("/health")->status, 200);
}

TEST(HttpServer, MetricsArePrometheusText) {
  TestServer server;
  auto c = server.client();
  ASSERT_EQ(post_json(c, "/v1/chat/completions", chat_body("hello", 6)).status, 200);
  auto res = c.Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)");
  const std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$)");
  std::istringstream lines(res->body);
  std::string line;
  std::map<std::string, double> values;
  int num_samples = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      EXPECT_TRUE(std::regex_match(line, comment)) << line;
      continue;
    }
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    ++num_samples;
    std::string name = line.substr(0, line.find_first_of("{ "));
    if (line.find("le=") == std::string::npos) values[name] = std::stod(line.substr(line.rfind(' ') + 1));
  }
  EXPECT_GT(num_samples, 20);
  for (const char* name : {"troupe:num_requests_running", "troupe:num_requests_waiting", "troupe:kv_cache_usage_perc",
                           "troupe:prompt_tokens_total", "troupe:generation_tokens_total",
                           "troupe:time_to_first_token_seconds_count", "troupe:inter_token_latency_seconds_count",
                           "troupe:e2e_request_latency_seconds_count"})
    EXPECT_TRUE(values.count(name)) << name;
  EXPECT_EQ(values["troupe:generation_tokens_total"], 6);
  EXPECT_EQ(values["troupe:time_to_first_token_seconds_count"], 1);
  EXPECT_EQ(values["troupe:inter_token_latency_seconds_count"], 5);
  EXPECT_EQ(values["troupe:e2e_request_latency_seconds_count"], 1);
}

}  // namespace
}  // namespace troupe::testing
