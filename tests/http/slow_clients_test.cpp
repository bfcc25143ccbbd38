// Slow and idle clients (issue #18, hostile clients): a stream nobody reads, thousands of idle
// connections, headers trickled a byte at a time. None of them may slow the other clients.
//
// The bound for a client that does not read its stream (http/server.cpp): the kernel's socket
// buffers fill, the server's write then waits at most its write timeout (5 s) and the request is
// cancelled, its KV blocks freed; until then its undelivered output is at most its max_tokens.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <thread>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until && !done()) std::this_thread::sleep_for(10ms);
  return done();
}

// `receive_buffer` > 0: the socket's SO_RCVBUF, set before connecting (its TCP window).
int connect_to(int port, int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd >= 0 && receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

json stream_body(int64_t max_tokens) {
  return json{{"model", "tiny"},
              {"messages", {{{"role", "user"}, {"content", "hi"}}}},
              {"max_tokens", max_tokens},
              {"stream", true}};
}

// Streams one completion; returns its content length (0 on any failure) and its duration.
std::pair<size_t, double> timed_stream(httplib::Client& c, int64_t max_tokens) {
  const auto start = Clock::now();
  auto res = c.Post("/v1/chat/completions", stream_body(max_tokens).dump(), "application/json");
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!res || res->status != 200) return {0, seconds};
  size_t content = 0;
  bool done = false;
  for (const json& e : sse_events(res->body)) {
    if (e == "[DONE]") done = true;
    else if (e.is_object() && !e["choices"].empty()) content += e["choices"][0]["delta"].value("content", "").size();
  }
  return {done ? content : 0, seconds};
}

TEST(SlowClients, AStreamNobodyReadsIsCancelledAndTheOtherStreamsKeepTheirPace) {
  FakeEngineOptions options;
  options.step_delay = 1ms;
  options.max_model_len = 1 << 20;
  Config config = test_config();
  TestServer server(options, config);
  auto c = server.client();
  constexpr int64_t kTokens = 300;
  const auto [alone_content, alone_seconds] = timed_stream(c, kTokens);
  ASSERT_EQ(alone_content, size_t(kTokens));

  // The hog asks for 500,000 tokens (over 8 minutes at one per ms) and never reads a byte; its
  // window is small (4 KiB): the server's socket buffer fills (about 10,000 tokens here), then its
  // write times out.
  const int hog = connect_to(server.port(), 4096);
  ASSERT_GE(hog, 0);
  const std::string body = stream_body(500000).dump();
  const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(::send(hog, head.data(), head.size(), MSG_NOSIGNAL), ssize_t(head.size()));
  ASSERT_TRUE(wait_for([&] { return server.engine().stats().num_running == 1; }, 5s));

  // Four streams beside it finish whole, at about their pace alone.
  std::vector<std::pair<size_t, double>> results(4);
  std::vector<std::thread> clients;
  for (auto& result : results)
    clients.emplace_back([&] {
      auto own = server.client();
      result = timed_stream(own, kTokens);
    });
  for (auto& t : clients) t.join();
  for (const auto& [content, seconds] : results) {
    EXPECT_EQ(content, size_t(kTokens));
    EXPECT_LT(seconds, 4 * alone_seconds + 2.0) << "alone: " << alone_seconds << " s";
  }
  // The hog's request is cancelled once its write waited the write timeout: its blocks are freed
  // long before its 500,000 tokens could have been generated, while its socket is still open.
  const auto hog_start = Clock::now();
  EXPECT_TRUE(server.engine().wait_until_idle(60s)) << "the unread stream was never cancelled";
  std::printf("[ slow clients ] 4 streams of %lld tokens beside an unread stream: %.2f s (alone %.2f s); the unread "
              "stream cancelled %.1f s later\n",
              (long long)kTokens, results[0].second, alone_seconds,
              std::chrono::duration<double>(Clock::now() - hog_start).count());
  ::close(hog);
  EXPECT_EQ(c.Get("/health")->status, 200);
}

// 2,000 sockets that connect and send nothing, 300 that trickle their headers a byte every 500 ms
// (more than a fixed pool's 272 threads: each holds its thread for as long as it trickles): a
// normal client still gets its answers (a fixed pool would queue it until the tricklers stop).
TEST(SlowClients, ThousandsOfIdleConnectionsAndTrickledHeadersLeaveOtherClientsServed) {
  constexpr int kIdle = 2000, kTricklers = 300;
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_max < rlim_t(2 * (kIdle + kTricklers) + 256))
    GTEST_SKIP() << "the hard limit of open files (" << limit.rlim_max << ") is below the "
                 << 2 * (kIdle + kTricklers) + 256 << " this test needs (both ends in one process)";
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);

  TestServer server;
  std::vector<int> idle;
  for (int i = 0; i < kIdle; ++i) {
    const int fd = connect_to(server.port());
    ASSERT_GE(fd, 0) << "connection " << i << " refused";
    idle.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> tricklers;
  for (int i = 0; i < kTricklers; ++i)
    tricklers.emplace_back([&] {
      const int fd = connect_to(server.port());
      const std::string head = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'a') + "\r\n\r\n";
      for (size_t at = 0; at < head.size() && !stop; ++at) {
        if (::send(fd, head.data() + at, 1, MSG_NOSIGNAL) != 1) break;
        std::this_thread::sleep_for(500ms);
      }
      ::close(fd);
    });
  // The sockets are accepted and wait (an idle one holds a thread until its 2 s keep-alive timeout,
  // a trickling one for as long as it trickles).
  std::this_thread::sleep_for(1s);
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Threads:", 0) == 0) std::printf("[ slow clients ] %s with %d idle connections open\n", line.c_str(), kIdle);

  auto c = server.client();
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    auto health = c.Get("/health");
    const double health_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    ASSERT_TRUE(health) << "no answer beside " << kIdle << " idle connections";
    EXPECT_EQ(health->status, 200);
    EXPECT_LT(health_seconds, 5.0) << "queued behind the idle and trickling connections";
    auto fresh = server.client();  // a new connection each time, as a new client
    const auto [content, seconds] = timed_stream(fresh, 20);
    EXPECT_EQ(content, 20u);
    EXPECT_LT(seconds, 5.0) << "queued behind the idle and trickling connections";
  }
  stop = true;
  for (auto& t : tricklers) t.join();
  for (int fd : idle) ::close(fd);
}

}  // namespace
}  // namespace troupe::testing
