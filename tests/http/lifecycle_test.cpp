// The server's lifecycle and overload rules over the FakeEngine: a drain (SIGTERM) answers 503 to
// new work while streams and plain requests run to their end, a drain past its timeout aborts what
// is left (streams still end with [DONE]), --max-waiting-requests answers 429, --request-timeout
// ends a request with an error, and a non-streaming client that hangs up cancels its generation.
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

using namespace std::chrono_literals;

json chat(int64_t max_tokens, bool stream) {
  return json{{"model", "tiny"},
              {"messages", json::array({json{{"role", "user"}, {"content", "hi"}}})},
              {"max_tokens", max_tokens},
              {"stream", stream}};
}

FakeEngineOptions slow_engine() {
  FakeEngineOptions options;
  options.step_delay = 10ms;
  return options;
}

// The finish_reason of a stream's last choice chunk and whether [DONE] closed it.
struct StreamEnd {
  std::string finish_reason;
  bool done = false;
  bool error_event = false;
};

StreamEnd stream_end(const std::string& body) {
  StreamEnd end;
  for (const json& e : sse_events(body)) {
    if (e == json("[DONE]")) end.done = true;
    if (e.is_object() && e.contains("error")) end.error_event = true;
    if (e.is_object() && e.contains("choices") && !e["choices"].empty() && e["choices"][0]["finish_reason"].is_string())
      end.finish_reason = e["choices"][0]["finish_reason"];
  }
  return end;
}

// Posts `body` on its own thread; the future holds the reply.
std::future<JsonReply> post_async(TestServer& server, const json& body) {
  return std::async(std::launch::async, [&server, body] {
    auto c = server.client();
    return post_json(c, "/v1/chat/completions", body);
  });
}

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout = 3s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

void expect_retry_after(httplib::Client& c, int status) {
  auto res = c.Post("/v1/chat/completions", chat(4, false).dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, status);
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  JsonReply reply{res->status, json::parse(res->body, nullptr, false), res->body};
  expect_error_shape(reply, status);
}

TEST(HttpLifecycle, DrainRefusesNewWorkWhileRequestsInFlightFinish) {
  TestServer server(slow_engine());
  auto stream = post_async(server, chat(40, true));   // ~0.4 s
  auto plain = post_async(server, chat(40, false));
  ASSERT_TRUE(wait_for([&] { return server.engine().stats().num_running == 2; }));

  auto drained = std::async(std::launch::async, [&] { return server.server().drain(5s); });
  auto c = server.client();
  ASSERT_TRUE(wait_for([&] {
    auto res = c.Get("/health");
    return res && res->status == 503;
  }));
  expect_retry_after(c, 503);
  EXPECT_EQ(server.engine().stats().num_running, 2);  // the refused one never reached the engine
  auto live = c.Get("/live");  // draining is not dying: liveness stays 200
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_EQ(json::parse(live->body)["status"], "draining");

  EXPECT_TRUE(drained.get());  // every request ended on its own
  JsonReply streamed = stream.get(), answered = plain.get();
  ASSERT_EQ(streamed.status, 200);
  StreamEnd end = stream_end(streamed.raw);
  EXPECT_EQ(end.finish_reason, "length");
  EXPECT_TRUE(end.done);
  ASSERT_EQ(answered.status, 200) << answered.raw;
  EXPECT_EQ(answered.body["choices"][0]["finish_reason"], "length");
}

TEST(HttpLifecycle, DrainTimeoutAbortsWhatIsLeftAndStreamsStillEndWithDone) {
  TestServer server(slow_engine());
  auto stream = post_async(server, chat(150, true));  // ~1.5 s: the abort comes first
  auto plain = post_async(server, chat(150, false));
  ASSERT_TRUE(wait_for([&] { return server.engine().stats().num_running == 2; }));

  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(server.server().drain(200ms));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  JsonReply streamed = stream.get(), answered = plain.get();
  StreamEnd end = stream_end(streamed.raw);
  EXPECT_EQ(end.finish_reason, "abort") << streamed.raw.substr(streamed.raw.size() - 300);
  EXPECT_TRUE(end.done);
  ASSERT_EQ(answered.status, 200) << answered.raw;
  EXPECT_EQ(answered.body["choices"][0]["finish_reason"], "abort");
  EXPECT_TRUE(server.engine().wait_until_idle(2s));
}

TEST(HttpLifecycle, MaxWaitingRequestsAnswers429) {
  FakeEngineOptions options = slow_engine();
  options.max_running = 1;
  Config config = test_config();
  config.max_waiting_requests = 1;
  TestServer server(options, config);
  auto running = post_async(server, chat(20, false));
  ASSERT_TRUE(wait_for([&] { return server.engine().stats().num_running == 1; }));
  auto waiting = post_async(server, chat(20, false));
  ASSERT_TRUE(wait_for([&] { return server.engine().stats().num_waiting == 1; }));

  auto c = server.client();
  expect_retry_after(c, 429);
  EXPECT_EQ(running.get().status, 200);
  EXPECT_EQ(waiting.get().status, 200);
  // The queue drained: admitted again.
  EXPECT_EQ(post_json(c, "/v1/chat/completions", chat(2, false)).status, 200);
}

TEST(HttpLifecycle, RequestTimeoutEndsRequestsWithAnErrorAndFreesTheirKv) {
  Config config = test_config();
  config.request_timeout_s = 0.2;
  TestServer server(slow_engine(), config);
  auto c = server.client();

  const auto started = std::chrono::steady_clock::now();
  JsonReply plain = post_json(c, "/v1/chat/completions", chat(150, false));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_NE(expect_error_shape(plain, 504).find("request-timeout"), std::string::npos);

  JsonReply streamed = post_json(c, "/v1/chat/completions", chat(150, true));
  ASSERT_EQ(streamed.status, 200);
  StreamEnd end = stream_end(streamed.raw);
  EXPECT_TRUE(end.error_event);
  EXPECT_EQ(end.finish_reason, "abort");
  EXPECT_TRUE(end.done);
  EXPECT_TRUE(server.engine().wait_until_idle(2s));

  // Quick requests are untouched.
  EXPECT_EQ(post_json(c, "/v1/chat/completions", chat(3, false)).status, 200);
}

TEST(HttpLifecycle, NonStreamingClientHangingUpCancelsItsGeneration) {
  FakeEngineOptions options;
  options.step_delay = 50ms;
  TestServer server(options);
  auto c = server.client();
  c.set_read_timeout(0, 300 * 1000);  // gives up after 0.3 s and closes the connection
  auto res = c.Post("/v1/chat/completions", chat(150, false).dump(), "application/json");  // ~7.5 s
  EXPECT_FALSE(res);
  c.stop();
  EXPECT_TRUE(server.engine().wait_until_idle(3s)) << "the generation outlived its client";
}

}  // namespace
}  // namespace troupe::testing
