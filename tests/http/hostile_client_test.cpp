// Hostile clients (issue #18, item 5): a huge announced body, JSON nested 100,000 deep, invalid
// UTF-8, `n` and `max_tokens` past their limits. Each gets a clear 4xx and the server carries on.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

// Sends `head` on a raw socket and returns what the server answers within 10 s (its status line).
std::string raw_exchange(int port, const std::string& head) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "";
  }
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  (void)!::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  char buf[4096];
  ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  ::close(fd);
  return n > 0 ? std::string(buf, size_t(n)) : "";
}

// A 1 GB body announced by Content-Length is refused from the headers alone: the client sends
// none of it and gets its 413 at once, from the headers (http/server.cpp), the connection closed.
TEST(HostileClient, AnnouncedGigabyteBodyGets413BeforeItIsRead) {
  TestServer server;
  const auto start = std::chrono::steady_clock::now();
  std::string reply = raw_exchange(server.port(),
                                   "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 1000000000\r\n\r\n{\"model\":");
  EXPECT_EQ(reply.rfind("HTTP/1.1 413", 0), 0u) << reply;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));  // not the 5 s read timeout
  auto c = server.client();
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_TRUE(server.engine().submitted().empty());
}

TEST(HostileClient, JsonNested100000DeepGets400WithoutRecursion) {
  Config config = test_config();
  config.max_body_bytes = 1 << 20;
  TestServer server({}, config);
  auto c = server.client();
  for (const std::string& open : {std::string("["), std::string("{\"a\":")}) {
    std::string body;
    for (int i = 0; i < 100000; ++i) body += open;
    std::string message = expect_error_shape(post_json(c, "/v1/chat/completions", body), 400);
    EXPECT_NE(message.find("nested too deeply"), std::string::npos) << message;
  }
  EXPECT_EQ(c.Get("/health")->status, 200);
}

// vLLM (FastAPI) rejects a body that is not UTF-8 with a 400-class error before validation; so do
// we: nlohmann's parser checks UTF-8 inside strings, so the body is "not valid JSON" (400).
TEST(HostileClient, InvalidUtf8InContentGets400) {
  TestServer server;
  auto c = server.client();
  for (const std::string& bad : {std::string("\xff\xfe"), std::string("\xc3\x28"), std::string("\xed\xa0\x80"),
                                 std::string("\xe2\x82")}) {
    std::string body = R"({"model":"tiny","messages":[{"role":"user","content":"a)" + bad + R"(b"}]})";
    std::string message = expect_error_shape(post_json(c, "/v1/chat/completions", body), 400);
    EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
  }
  EXPECT_TRUE(server.engine().submitted().empty());
}

TEST(HostileClient, NAndMaxTokensPastTheirLimitsGetClear400s) {
  TestServer server;
  auto c = server.client();
  auto body = [](const char* field, json value) {
    json b{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
    b[field] = value;
    return b;
  };
  EXPECT_EQ(post_json(c, "/v1/chat/completions", body("n", 128)).status, 200);
  for (auto [field, value] : {std::pair<const char*, json>{"n", 129}, {"n", 0}, {"n", -1}, {"n", 1e30},
                              {"max_tokens", 0}, {"max_tokens", 2147483648ll}, {"max_tokens", -5},
                              {"max_completion_tokens", 18446744073709551615ull}}) {
    std::string message = expect_error_shape(post_json(c, "/v1/chat/completions", body(field, value)), 400);
    EXPECT_NE(message.find(std::string("'") + field + "' must be an integer in"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace troupe::testing
