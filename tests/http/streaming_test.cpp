// SSE streaming: chunk shapes, include_usage, stop strings and reasoning across chunk boundaries,
// n > 1, and a client that leaves mid-stream (its request is cancelled, its KV blocks freed).
#include <atomic>
#include <thread>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

using namespace std::chrono_literals;

json chat_stream_body(int64_t max_tokens, bool include_usage) {
  json body{{"model", "tiny"},
            {"messages", {{{"role", "user"}, {"content", "hi"}}}},
            {"max_tokens", max_tokens},
            {"stream", true}};
  if (include_usage) body["stream_options"] = {{"include_usage", true}};
  return body;
}

struct StreamResult {
  std::vector<json> events;
  std::map<int, std::string> content, reasoning, finish_reason;
  json usage;
  bool done_last = false;
};

StreamResult stream(httplib::Client& c, const std::string& path, const json& body) {
  StreamResult r;
  auto res = c.Post(path.c_str(), body.dump(), "application/json");
  if (!res) {
    ADD_FAILURE() << "no response";
    return r;
  }
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  r.events = sse_events(res->body);
  r.done_last = !r.events.empty() && r.events.back() == "[DONE]";
  for (const json& e : r.events) {
    if (e == "[DONE]") continue;
    EXPECT_TRUE(e.is_object()) << res->body;
    if (e.contains("usage") && !e["usage"].is_null()) r.usage = e["usage"];
    for (const json& choice : e["choices"]) {
      int index = choice["index"];
      if (choice.contains("delta")) {
        r.content[index] += choice["delta"].value("content", "");
        r.reasoning[index] += choice["delta"].value("reasoning_content", "");
      } else {
        r.content[index] += choice.value("text", "");
      }
      if (!choice["finish_reason"].is_null()) r.finish_reason[index] = choice["finish_reason"];
    }
  }
  return r;
}

TEST(HttpStreaming, ChatChunksWithIncludeUsage) {
  TestServer server;
  auto c = server.client();
  StreamResult r = stream(c, "/v1/chat/completions", chat_stream_body(6, true));
  ASSERT_TRUE(r.done_last);
  ASSERT_GE(r.events.size(), 4u);
  const json& first = r.events[0];
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  // Every chunk but the usage one carries "usage": null; the usage chunk has no choices.
  for (size_t i = 0; i + 2 < r.events.size(); ++i) {
    EXPECT_TRUE(r.events[i]["usage"].is_null()) << r.events[i];
    EXPECT_EQ(r.events[i]["id"], first["id"]);
  }
  const json& usage_chunk = r.events[r.events.size() - 2];
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], 6);
  EXPECT_EQ(usage_chunk["usage"]["total_tokens"],
            usage_chunk["usage"]["prompt_tokens"].get<int64_t>() + 6);
  EXPECT_EQ(r.finish_reason[0], "length");
  // Same text as the non-streaming answer.
  json plain = chat_stream_body(6, false);
  plain["stream"] = false;
  auto whole = post_json(c, "/v1/chat/completions", plain);
  EXPECT_EQ(r.content[0], whole.body["choices"][0]["message"]["content"]);
}

TEST(HttpStreaming, NoUsageChunkWithoutIncludeUsage) {
  TestServer server;
  auto c = server.client();
  StreamResult r = stream(c, "/v1/chat/completions", chat_stream_body(3, false));
  ASSERT_TRUE(r.done_last);
  EXPECT_TRUE(r.usage.is_null());
  for (const json& e : r.events)
    if (e != "[DONE]") EXPECT_FALSE(e.contains("usage"));
}

TEST(HttpStreaming, CompletionStream) {
  TestServer server({.script = "streamed text", .tokens_per_step = 2});
  auto c = server.client();
  json body{{"model", "tiny"}, {"prompt", "p"}, {"max_tokens", 100}, {"stream", true},
            {"stream_options", {{"include_usage", true}}}};
  StreamResult r = stream(c, "/v1/completions", body);
  ASSERT_TRUE(r.done_last);
  EXPECT_EQ(r.events[0]["object"], "text_completion");
  EXPECT_EQ(r.content[0], "streamed text");
  EXPECT_EQ(r.finish_reason[0], "stop");
  EXPECT_EQ(r.usage["completion_tokens"], 13);
  EXPECT_EQ(r.usage["prompt_tokens"], 1);
}

TEST(HttpStreaming, StopStringsAcrossChunkBoundariesNeverLeak) {
  for (int per_step : {1, 2, 3, 5}) {
    SCOPED_TRACE("tokens_per_step " + std::to_string(per_step));
    TestServer server({.script = "abcSTxOPdefSTOPghi", .tokens_per_step = per_step});
    auto c = server.client();
    json body = chat_stream_body(100, true);
    body["stop"] = "STOP";
    StreamResult r = stream(c, "/v1/chat/completions", body);
    ASSERT_TRUE(r.done_last);
    EXPECT_EQ(r.content[0], "abcSTxOPdef");
    EXPECT_EQ(r.finish_reason[0], "stop");
    for (const json& e : r.events)
      if (e != "[DONE]" && !e["choices"].empty())
        EXPECT_EQ(e["choices"][0]["delta"].value("content", "").find("STOP"), std::string::npos) << e;
    EXPECT_TRUE(server.engine().wait_until_idle(5s));
  }
}

TEST(HttpStreaming, ReasoningSplitWhileStreaming) {
  Config config = test_config();
  config.reasoning_parser = "deepseek_r1";
  for (int per_step : {1, 4}) {
    TestServer server({.script = "<think>step one</think>final", .tokens_per_step = per_step}, config);
    auto c = server.client();
    StreamResult r = stream(c, "/v1/chat/completions", chat_stream_body(100, false));
    ASSERT_TRUE(r.done_last);
    EXPECT_EQ(r.reasoning[0], "step one");
    EXPECT_EQ(r.content[0], "final");
    for (const json& e : r.events)
      if (e != "[DONE]") EXPECT_EQ(e.dump().find('<'), std::string::npos) << e;
  }
  TestServer opened({.script = "thought</think>said"}, config, /*opens_think=*/true);
  auto c = opened.client();
  StreamResult r = stream(c, "/v1/chat/completions", chat_stream_body(100, false));
  EXPECT_EQ(r.reasoning[0], "thought");
  EXPECT_EQ(r.content[0], "said");
}

TEST(HttpStreaming, NChoicesStreamTogether) {
  TestServer server;
  auto c = server.client();
  json body = chat_stream_body(5, true);
  body["n"] = 2;
  body["seed"] = 1;
  StreamResult r = stream(c, "/v1/chat/completions", body);
  ASSERT_TRUE(r.done_last);
  ASSERT_EQ(r.content.size(), 2u);
  EXPECT_NE(r.content[0], r.content[1]);
  EXPECT_EQ(r.content[0].size(), 5u);
  EXPECT_EQ(r.content[1].size(), 5u);
  EXPECT_EQ(r.finish_reason[0], "length");
  EXPECT_EQ(r.finish_reason[1], "length");
  EXPECT_EQ(r.usage["completion_tokens"], 10);
}

TEST(HttpStreaming, ClientDisconnectCancelsAndFreesBlocks) {
  TestServer server({.step_delay = 10ms});
  {
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(10, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.body = chat_stream_body(200, false).dump();  // 2 s of tokens at 10 ms a step
    req.set_header("Content-Type", "application/json");
    std::atomic<int> num_received{0};
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++num_received < 4; };
    auto res = c.send(req);
    EXPECT_GE(num_received.load(), 4);
    // While streaming, the engine held blocks for this request.
    EXPECT_EQ(server.engine().submitted().size(), 1u);
  }
  EXPECT_TRUE(server.engine().wait_until_idle(10s)) << "KV blocks in use: "
                                                    << server.engine().stats().num_kv_blocks_used;
  EXPECT_LT(server.engine().stats().num_generation_tokens_total, 150);
  auto c = server.client();
  EXPECT_EQ(c.Get("/health")->status, 200);
}

}  // namespace
}  // namespace troupe::testing

namespace troupe::testing {
namespace {

using namespace std::chrono_literals;

TEST(HttpStreaming, ManyConcurrentStreamsEachGetTheirOwnTokens) {
  TestServer server({.step_delay = 2ms});
  constexpr int kNumClients = 24;  // more than httplib's default pool of 8 threads
  std::vector<std::thread> threads;
  std::vector<std::string> texts(kNumClients);
  std::vector<int> statuses(kNumClients, 0);
  for (int i = 0; i < kNumClients; ++i) {
    threads.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", server.port());
      c.set_read_timeout(20, 0);
      json body = chat_stream_body(20, false);
      body["seed"] = i;
      auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
      if (!res) return;
      statuses[i] = res->status;
      for (const json& e : sse_events(res->body))
        if (e != "[DONE]") texts[i] += e["choices"][0]["delta"].value("content", "");
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kNumClients; ++i) {
    EXPECT_EQ(statuses[i], 200) << i;
    std::string expected;
    for (int k = 0; k < 20; ++k) expected += char(FakeEngine::letter(i, k));
    EXPECT_EQ(texts[i], expected) << i;
  }
  EXPECT_TRUE(server.engine().wait_until_idle(5s));
}

TEST(HttpStreaming, EngineErrorsBecomeErrors) {
  TestServer server({.fail_after = 2});
  auto c = server.client();
  json plain = chat_stream_body(10, false);
  plain["stream"] = false;
  expect_error_shape(post_json(c, "/v1/chat/completions", plain), 500);
  auto res = c.Post("/v1/chat/completions", chat_stream_body(10, false).dump(), "application/json");
  ASSERT_TRUE(res);
  std::vector<json> events = sse_events(res->body);
  bool saw_error = false;
  for (const json& e : events) saw_error |= e.is_object() && e.contains("error");
  EXPECT_TRUE(saw_error) << res->body;
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(c.Get("/health")->status, 200);
}

TEST(HttpStreaming, StoppingTheServerEndsStreamsAndCancels) {
  auto server = std::make_unique<TestServer>(FakeEngineOptions{.step_delay = 10ms});
  int port = server->port();
  std::thread client([port] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(20, 0);
    c.Post("/v1/chat/completions", chat_stream_body(200, false).dump(), "application/json");
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(server->engine().stats().num_running, 1);
  auto started = std::chrono::steady_clock::now();
  server.reset();  // stops the HTTP server, then the engine
  client.join();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

}  // namespace
}  // namespace troupe::testing
