// vLLM's request fields through the HTTP server over the fake engine: what reaches the engine,
// what comes back, and a 400 naming the field for every bad value.
#include <gtest/gtest.h>

#include "http/choice_stream.hpp"
#include "tests/http/log_capture.hpp"
#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

json chat(const std::string& content, int64_t max_tokens = 5) {
  return json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", content}}}}, {"max_tokens", max_tokens}};
}

json completion(const std::string& prompt, int64_t max_tokens = 5) {
  return json{{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", max_tokens}};
}

std::string param_of(const JsonReply& reply) {
  return reply.body.contains("error") && reply.body["error"]["param"].is_string()
             ? reply.body["error"]["param"].get<std::string>()
             : "";
}

TEST(HttpRequestFields, LogitBiasAndMinTokensReachTheEngine) {
  TestServer server;
  auto c = server.client();
  json body = chat("x", 6);
  body["logit_bias"] = {{"65", 5}, {"7", -100.0}};
  body["min_tokens"] = 3;
  ASSERT_EQ(post_json(c, "/v1/chat/completions", body).status, 200);
  const SamplingParams p = server.engine().submitted().at(0).params;  // a copy: submitted() is one
  ASSERT_EQ(p.logit_bias.size(), 2u);
  EXPECT_EQ(p.logit_bias[0].token_id, 65);
  EXPECT_FLOAT_EQ(p.logit_bias[0].bias, 5.0f);
  EXPECT_EQ(p.logit_bias[1].token_id, 7);
  EXPECT_FLOAT_EQ(p.logit_bias[1].bias, -100.0f);
  EXPECT_EQ(p.min_tokens, 3);
}

TEST(HttpRequestFields, BadValuesAre400sNamingTheField) {
  TestServer server;
  auto c = server.client();
  struct Case {
    const char* field;
    json value;
    const char* endpoint;
  };
  const std::vector<Case> cases = {
      {"logit_bias", json{{"300", 1}}, "/v1/chat/completions"},  // past the vocabulary (256)
      {"logit_bias", json{{"abc", 1}}, "/v1/chat/completions"},
      {"logit_bias", json{{"5", 101}}, "/v1/completions"},
      {"logit_bias", json::array({1, 2}), "/v1/completions"},
      {"min_tokens", -1, "/v1/chat/completions"},
      {"min_tokens", 9, "/v1/chat/completions"},  // > max_tokens (5)
      {"best_of", 2, "/v1/completions"},
      {"prompt_logprobs", -1, "/v1/completions"},
      {"prompt_logprobs", "2", "/v1/completions"},
      {"prompt_logprobs", 50, "/v1/chat/completions"},
      {"skip_special_tokens", "yes", "/v1/chat/completions"},
      {"spaces_between_special_tokens", 1, "/v1/completions"},
      {"include_stop_str_in_output", "no", "/v1/completions"},
      {"echo", 3, "/v1/chat/completions"},
      {"chat_template_kwargs", "thinking", "/v1/chat/completions"},
      {"chat_template", "{{ x }}", "/v1/chat/completions"},
      {"continue_final_message", true, "/v1/chat/completions"},  // with add_generation_prompt (default true)
      {"user", 5, "/v1/chat/completions"},
      {"suffix", "x", "/v1/completions"},
  };
  for (const Case& k : cases) {
    json body = std::string(k.endpoint) == "/v1/completions" ? completion("hi") : chat("hi");
    body[k.field] = k.value;
    JsonReply reply = post_json(c, k.endpoint, body);
    expect_error_shape(reply, 400);
    EXPECT_EQ(param_of(reply), k.field) << k.field << " = " << k.value.dump() << ": " << reply.raw;
  }
  // best_of equal to n is fine, as is a user.
  json ok = completion("hi");
  ok["best_of"] = 1;
  ok["user"] = "alice";
  EXPECT_EQ(post_json(c, "/v1/completions", ok).status, 200);
}

TEST(HttpRequestFields, ImageAndAudioPartsAre400sNamingThePartType) {
  TestServer server;
  auto c = server.client();
  for (const char* type : {"image_url", "input_audio"}) {
    json body = chat("x");
    body["messages"][0]["content"] = json::array({{{"type", "text"}, {"text", "what is this?"}}, {{"type", type}}});
    JsonReply reply = post_json(c, "/v1/chat/completions", body);
    const std::string message = expect_error_shape(reply, 400);
    EXPECT_EQ(param_of(reply), "messages[0].content[1]");
    EXPECT_NE(message.find(type), std::string::npos) << message;
  }
}

TEST(HttpRequestFields, IncludeStopStrInOutput) {
  FakeEngineOptions options;
  options.script = "hello world. bye";
  TestServer server(options);
  auto c = server.client();
  json body = completion("p", 32);
  body["stop"] = ".";
  JsonReply plain = post_json(c, "/v1/completions", body);
  EXPECT_EQ(plain.body["choices"][0]["text"], "hello world");
  body["include_stop_str_in_output"] = true;
  JsonReply included = post_json(c, "/v1/completions", body);
  EXPECT_EQ(included.body["choices"][0]["text"], "hello world.");
  EXPECT_EQ(included.body["choices"][0]["finish_reason"], "stop");
}

TEST(HttpRequestFields, MinTokensHoldsOffStopStrings) {
  FakeEngineOptions options;
  options.script = "ab.cd.ef";
  TestServer server(options);
  auto c = server.client();
  json body = completion("p", 32);
  body["stop"] = ".";
  EXPECT_EQ(post_json(c, "/v1/completions", body).body["choices"][0]["text"], "ab");
  body["min_tokens"] = 4;  // the first '.' is token 3: not yet looked for
  EXPECT_EQ(post_json(c, "/v1/completions", body).body["choices"][0]["text"], "ab.cd");
  body["stream"] = true;
  auto res = c.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  std::string text;
  for (const json& e : sse_events(res->body))
    if (e.is_object() && !e["choices"].empty()) text += e["choices"][0].value("text", "");
  EXPECT_EQ(text, "ab.cd");
}

TEST(HttpRequestFields, EchoOnCompletionsAndChat) {
  FakeEngineOptions options;
  options.script = "XYZ";
  TestServer server(options);
  auto c = server.client();
  json body = completion("Once upon", 8);
  body["echo"] = true;
  EXPECT_EQ(post_json(c, "/v1/completions", body).body["choices"][0]["text"], "Once uponXYZ");
  body["prompt"] = json::array({72, 105});  // ids: decoded for the echo
  EXPECT_EQ(post_json(c, "/v1/completions", body).body["choices"][0]["text"], "HiXYZ");
  // Chat: the final assistant message, continued.
  json conv = chat("Count.", 8);
  conv["messages"].push_back({{"role", "assistant"}, {"content", "One, "}});
  conv["echo"] = true;
  conv["continue_final_message"] = true;
  conv["add_generation_prompt"] = false;
  JsonReply reply = post_json(c, "/v1/chat/completions", conv);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(reply.body["choices"][0]["message"]["content"], "One, XYZ");
  // The prompt ends inside that message (the fake template would close it with "\n").
  const std::vector<int32_t> prompt = server.engine().submitted().back().prompt_ids;
  EXPECT_EQ(std::string(prompt.end() - 5, prompt.end()), "One, ");
  // Streamed: the echo is the first content.
  conv["stream"] = true;
  auto res = c.Post("/v1/chat/completions", conv.dump(), "application/json");
  ASSERT_TRUE(res);
  std::string first;
  for (const json& e : sse_events(res->body))
    if (e.is_object() && !e["choices"].empty() && e["choices"][0]["delta"].contains("content") &&
        !e["choices"][0]["delta"]["content"].get<std::string>().empty()) {
      first = e["choices"][0]["delta"]["content"];
      break;
    }
  EXPECT_EQ(first.substr(0, 5), "One, ");
}

TEST(HttpRequestFields, UnknownFieldsAreIgnoredWithOneLogLineAndUserIsLogged) {
  LogCapture http_log("http");
  LogCapture request_log("request");
  TestServer server;
  auto c = server.client();
  json body = chat("x");
  body["frobnicate"] = 1;
  body["zzz_option"] = "y";
  body["user"] = "alice";
  ASSERT_EQ(post_json(c, "/v1/chat/completions", body).status, 200);
  int found = 0;
  for (const std::string& line : http_log.lines())
    if (line.find("ignored: frobnicate, zzz_option") != std::string::npos) ++found;
  EXPECT_EQ(found, 1);
  bool user_logged = false;
  for (const std::string& line : request_log.lines()) user_logged |= line.find("user=alice") != std::string::npos;
  EXPECT_TRUE(user_logged);
}

TEST(HttpRequestFields, ServedModelAliasesAndPing) {
  Config config = test_config();
  config.served_model_names = {"tiny", "alias-a", "alias-b"};
  TestServer server({}, config);
  auto c = server.client();
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  json m = json::parse(models->body);
  ASSERT_EQ(m["data"].size(), 3u);
  EXPECT_EQ(m["data"][1]["id"], "alias-a");
  EXPECT_EQ(m["data"][2]["id"], "alias-b");
  json body = chat("x");
  body["model"] = "alias-b";
  JsonReply reply = post_json(c, "/v1/chat/completions", body);
  ASSERT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body["model"], "tiny");  // the first name answers, as vLLM
  body["model"] = "nope";
  EXPECT_EQ(post_json(c, "/v1/chat/completions", body).status, 404);
  auto ping = c.Get("/ping");
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->status, 200);
  auto ping_post = c.Post("/ping", "", "application/json");
  ASSERT_TRUE(ping_post);
  EXPECT_EQ(ping_post->status, 200);
  server.engine().set_ready(false);
  EXPECT_EQ(c.Get("/ping")->status, 503);
}

TEST(HttpRequestFields, ServerSeedMakesUnseededRequestsRepeat) {
  Config config = test_config();
  config.default_request_seed = 42;
  std::vector<int64_t> first_run;
  for (int run = 0; run < 2; ++run) {
    TestServer server({}, config);
    auto c = server.client();
    for (int i = 0; i < 3; ++i) ASSERT_EQ(post_json(c, "/v1/chat/completions", chat("x")).status, 200);
    json seeded = chat("x");
    seeded["seed"] = 7;
    ASSERT_EQ(post_json(c, "/v1/chat/completions", seeded).status, 200);
    std::vector<int64_t> seeds;
    for (const GenerationRequest& r : server.engine().submitted()) seeds.push_back(r.params.seed);
    ASSERT_EQ(seeds.size(), 4u);
    EXPECT_GE(seeds[0], 0);
    EXPECT_NE(seeds[0], seeds[1]);  // requests differ from each other
    EXPECT_EQ(seeds[3], 7);         // a request's own seed wins
    if (run == 0) first_run = seeds;
    else EXPECT_EQ(seeds, first_run);  // and a second run repeats the first
  }
}

TEST(HttpRequestFields, AFinalStopTokensTextIsLeftOutUnlessIncluded) {
  FakeTextCodec codec;
  for (bool include : {false, true}) {
    http::ChoiceStream choice(0, codec, {}, nullptr, false);
    http::ChoiceTextOptions options;
    options.stop_token_ids = {'!'};  // a stop id or an EOS (GenerationJob adds the model's)
    options.include_stop_str_in_output = include;
    choice.set_text_options(options);
    GenerationOutput out;
    out.new_token_ids = {'a', '!', 'b'};  // '!' inside the output is ordinary text
    choice.push(out);
    out.new_token_ids = {'c', '!'};
    out.finish_reason = FinishReason::stop;
    choice.push(out);
    EXPECT_EQ(choice.content(), include ? "a!bc!" : "a!bc");
    EXPECT_EQ(choice.num_completion_tokens(), 5);
  }
}

}  // namespace
}  // namespace troupe::testing
