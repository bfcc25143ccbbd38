#pragma once
// A real troupe HTTP server on 127.0.0.1 (ephemeral port) over a FakeEngine and FakeTextCodec,
// plus small helpers for the tests: JSON posts and SSE parsing.
#include <httplib.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/server.hpp"
#include "tests/http/fake_engine.hpp"
#include "tests/http/fake_text_codec.hpp"

namespace troupe::testing {

using nlohmann::json;

inline Config test_config() {
  Config config;
  config.served_model_name = "tiny";
  config.model = "fake/tiny";
  config.http_port = 0;
  config.max_body_bytes = 1 << 16;
  return config;
}

class TestServer {
 public:
  explicit TestServer(FakeEngineOptions options = {}, Config config = test_config(), bool opens_think = false)
      : config_(config),
        engine_(std::move(options)),
        server_(config, &engine_, std::make_shared<FakeTextCodec>(opens_think)) {
    Status bound = server_.bind();
    EXPECT_TRUE(bound.ok());
    thread_ = std::thread([this] { server_.listen(); });
    // Returns once the accept loop runs, so stop() below cannot miss it.
    auto c = client();
    c.Get("/health");
  }
  ~TestServer() {
    server_.stop();
    thread_.join();
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_.port());
    c.set_read_timeout(10, 0);
    c.set_connection_timeout(5, 0);
    c.set_tcp_nodelay(true);
    if (!config_.api_key.empty()) c.set_bearer_token_auth(config_.api_key.c_str());
    return c;
  }
  FakeEngine& engine() { return engine_; }
  http::Server& server() { return server_; }
  int port() const { return server_.port(); }

 private:
  Config config_;
  FakeEngine engine_;
  http::Server server_;
  std::thread thread_;
};

struct JsonReply {
  int status = 0;
  json body;
  std::string raw;
};

inline JsonReply post_json(httplib::Client& c, const std::string& path, const std::string& body) {
  JsonReply reply;
  auto res = c.Post(path.c_str(), body, "application/json");
  if (!res) return reply;
  reply.status = res->status;
  reply.raw = res->body;
  reply.body = json::parse(res->body, nullptr, false);
  return reply;
}

inline JsonReply post_json(httplib::Client& c, const std::string& path, const json& body) {
  return post_json(c, path, body.dump());
}

// The JSON payloads of an SSE body's `data:` events; "[DONE]" is kept as the string "[DONE]".
inline std::vector<json> sse_events(const std::string& body) {
  std::vector<json> events;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) end = body.size();
    std::string event = body.substr(at, end - at);
    at = end + 2;
    if (event.rfind("data: ", 0) != 0) continue;
    std::string data = event.substr(6);
    events.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data, nullptr, false));
  }
  return events;
}

// Checks the OpenAI error shape and returns the message.
inline std::string expect_error_shape(const JsonReply& reply, int status) {
  EXPECT_EQ(reply.status, status) << reply.raw;
  EXPECT_TRUE(reply.body.is_object()) << reply.raw;
  if (!reply.body.is_object() || !reply.body.contains("error")) {
    ADD_FAILURE() << "no error object: " << reply.raw;
    return "";
  }
  const json& e = reply.body["error"];
  EXPECT_TRUE(e.contains("message") && e["message"].is_string() && !e["message"].get<std::string>().empty());
  EXPECT_TRUE(e.contains("type") && e["type"].is_string());
  EXPECT_TRUE(e.contains("param"));
  EXPECT_EQ(e.value("code", 0), status);
  return e.value("message", "");
}

}  // namespace troupe::testing
