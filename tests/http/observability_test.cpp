// The request log, X-Request-Id, several API keys, open /metrics (and --protect-metrics),
// --metrics-prefix and the finished_reason counter, over a real socket and the FakeEngine.
#include <atomic>
#include <regex>
#include <thread>

#include "http/request_log.hpp"
#include "tests/http/log_capture.hpp"
#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

using namespace std::chrono_literals;

json chat_body(const std::string& content, int64_t max_tokens = 5) {
  return json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", content}}}}, {"max_tokens", max_tokens}};
}

// Polls until the captured log has n lines (a stream logs when its response is released).
std::vector<std::string> wait_for_lines(LogCapture& capture, size_t n) {
  for (int i = 0; i < 500 && capture.lines().size() < n; ++i) std::this_thread::sleep_for(10ms);
  return capture.lines();
}

std::string metrics_text(httplib::Client& c) {
  auto res = c.Get("/metrics");
  return res && res->status == 200 ? res->body : "";
}

TEST(HttpRequestLog, OneTextLinePerRequestWithHeaderIdAndKeyId) {
  LogCapture capture("request");
  Config config = test_config();
  config.api_key = "sk-one,sk-two";
  TestServer server({}, config);
  httplib::Client c("127.0.0.1", server.port());
  c.set_bearer_token_auth("sk-two");
  c.set_default_headers({{"X-Request-Id", "trace-42"}});
  auto res = c.Post("/v1/chat/completions", chat_body("hello", 5).dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("X-Request-Id"), "trace-42");

  auto lines = wait_for_lines(capture, 1);
  ASSERT_EQ(lines.size(), 1u);
  const std::string& line = lines[0];
  json reply = json::parse(res->body);
  for (std::string field : {"request_id=trace-42 ", "client=127.0.0.1:", "method=POST ", "path=/v1/chat/completions ",
                            "model=tiny ", "completion_tokens=5 ", "finish_reason=length ", "status=200"})
    EXPECT_NE(line.find(field), std::string::npos) << field << " in " << line;
  EXPECT_NE(line.find("key_id=" + http::api_key_id("sk-two") + " "), std::string::npos) << line;
  EXPECT_NE(line.find("prompt_tokens=" + std::to_string(reply["usage"]["prompt_tokens"].get<int64_t>()) + " "),
            std::string::npos)
      << line;
  EXPECT_TRUE(std::regex_search(line, std::regex(R"( ttft_ms=[0-9]+\.[0-9] duration_ms=[0-9]+\.[0-9] )"))) << line;
  // Never the key, never the prompt or the output without --log-requests-content.
  EXPECT_EQ(line.find("sk-"), std::string::npos) << line;
  EXPECT_EQ(line.find("hello"), std::string::npos) << line;
  EXPECT_EQ(line.find("prompt="), std::string::npos) << line;
}

TEST(HttpRequestLog, JsonLinesWithContentForStreamsAndErrors) {
  LogCapture capture("request_json");
  Config config = test_config();
  config.log_format = "json";
  config.log_requests_content = true;
  TestServer server({}, config);
  auto c = server.client();
  json body = chat_body("hello there", 4);
  body["stream"] = true;
  body["seed"] = 0;
  auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  // No X-Request-Id sent: the generated one is the response id.
  const std::string id = res->get_header_value("X-Request-Id");
  EXPECT_EQ(id.rfind("chatcmpl-", 0), 0u) << id;
  EXPECT_EQ(sse_events(res->body).front()["id"], id);

  json wrong_model = chat_body("x");
  wrong_model["model"] = "other";
  EXPECT_EQ(post_json(c, "/v1/chat/completions", wrong_model).status, 404);

  auto lines = wait_for_lines(capture, 2);
  ASSERT_EQ(lines.size(), 2u);
  // The stream's line is written when its last chunk is sent, which can come after the 404's.
  if (json::parse(lines[0])["request_id"] != id) std::swap(lines[0], lines[1]);
  json stream_line = json::parse(lines[0]);
  EXPECT_EQ(stream_line["request_id"], id);
  EXPECT_EQ(stream_line["status"], 200);
  EXPECT_EQ(stream_line["completion_tokens"], 4);
  EXPECT_EQ(stream_line["finish_reason"], "length");
  EXPECT_TRUE(stream_line["key_id"].is_null());  // auth off
  EXPECT_TRUE(stream_line["ttft_ms"].is_number());
  EXPECT_NE(stream_line["prompt"].get<std::string>().find("hello there"), std::string::npos);
  EXPECT_EQ(stream_line["output"], "abcd");
  json error_line = json::parse(lines[1]);
  EXPECT_EQ(error_line["status"], 404);
  EXPECT_EQ(error_line["model"], "other");
  EXPECT_TRUE(error_line["finish_reason"].is_null());
  EXPECT_EQ(error_line["completion_tokens"], 0);
}

TEST(HttpRequestLog, ClientThatLeavesIsLoggedAndCountedAsAbort) {
  LogCapture capture("request");
  FakeEngineOptions slow;
  slow.step_delay = 10ms;
  TestServer server(slow);
  {
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(10, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    json body = chat_body("hi", 200);
    body["stream"] = true;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    std::atomic<int> num_received{0};
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++num_received < 4; };
    c.send(req);
  }
  auto lines = wait_for_lines(capture, 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("finish_reason=abort "), std::string::npos) << lines[0];
  auto c = server.client();
  EXPECT_NE(metrics_text(c).find("troupe:request_success_total{model_name=\"tiny\",finished_reason=\"abort\"} 1\n"),
            std::string::npos);
}

TEST(HttpAuth, HealthAndMetricsOpenByDefaultAnyKeyAuthorizes) {
  Config config = test_config();
  config.api_key = "k1,k2";
  TestServer server({}, config);
  httplib::Client anonymous("127.0.0.1", server.port());
  EXPECT_EQ(anonymous.Get("/health")->status, 200);
  EXPECT_EQ(anonymous.Get("/metrics")->status, 200);
  EXPECT_EQ(anonymous.Get("/v1/models")->status, 401);
  for (const char* key : {"k1", "k2"}) {
    httplib::Client c("127.0.0.1", server.port());
    c.set_bearer_token_auth(key);
    EXPECT_EQ(c.Get("/v1/models")->status, 200) << key;
    EXPECT_EQ(post_json(c, "/v1/chat/completions", chat_body("x")).status, 200) << key;
  }
  for (const char* key : {"k3", "k1,k2", ""}) {
    httplib::Client c("127.0.0.1", server.port());
    c.set_bearer_token_auth(key);
    EXPECT_EQ(c.Get("/v1/models")->status, 401) << key;
  }
}

TEST(HttpAuth, ProtectMetricsNeedsTheKey) {
  Config config = test_config();
  config.api_key = "k1,k2";
  config.protect_metrics = true;
  TestServer server({}, config);
  httplib::Client anonymous("127.0.0.1", server.port());
  auto denied = anonymous.Get("/metrics");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 401);
  EXPECT_TRUE(json::parse(denied->body, nullptr, false).contains("error"));
  EXPECT_EQ(anonymous.Get("/health")->status, 200);
  httplib::Client c("127.0.0.1", server.port());
  c.set_bearer_token_auth("k2");
  EXPECT_EQ(c.Get("/metrics")->status, 200);
}

TEST(HttpMetrics, PrefixAndFinishedReasonsOverHttp) {
  Config config = test_config();
  config.metrics_prefix = "vllm:";
  FakeEngineOptions options;
  options.script = "hi";  // then stop
  TestServer server(options, config);
  auto c = server.client();
  ASSERT_EQ(post_json(c, "/v1/chat/completions", chat_body("x", 1)).status, 200);   // length
  ASSERT_EQ(post_json(c, "/v1/chat/completions", chat_body("x", 50)).status, 200);  // stop
  ASSERT_EQ(post_json(c, "/v1/chat/completions", chat_body("x", 50)).status, 200);  // stop
  std::string text = metrics_text(c);
  EXPECT_EQ(text.find("troupe:"), std::string::npos) << text;
  const std::string name = "vllm:request_success_total{model_name=\"tiny\",finished_reason=";
  EXPECT_NE(text.find(name + "\"stop\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find(name + "\"length\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find(name + "\"abort\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find(name + "\"error\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("vllm:time_to_first_token_seconds_bucket{model_name=\"tiny\",le=\"0.1\"}"), std::string::npos);
  // Prefix caching, in tokens as vLLM counts (the fake engine caches nothing).
  EXPECT_NE(text.find("# TYPE vllm:prefix_cache_queries_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("vllm:prefix_cache_hits_total{model_name=\"tiny\"} 0\n"), std::string::npos) << text;
}

TEST(HttpServer, ClientRequestIdIsEchoedOnOtherRoutes) {
  TestServer server;
  auto c = server.client();
  c.set_default_headers({{"X-Request-Id", "abc"}});
  EXPECT_EQ(c.Get("/v1/models")->get_header_value("X-Request-Id"), "abc");
  c.set_default_headers({{"X-Request-Id", std::string(200, 'x')}});
  EXPECT_FALSE(c.Get("/v1/models")->has_header("X-Request-Id"));
}

}  // namespace
}  // namespace troupe::testing
