// TensorChannel over UCX on 127.0.0.1: round trips, tags, timeouts, dead peers, refused connects.
//
// Transport choice: UCX_TLS=tcp (passed as UcxOptions::transports, same effect as the env var).
// With tcp a killed peer closes its sockets, so the survivor's endpoint error handler fires within
// milliseconds; with shared memory (sysv/posix) UCX notices a dead peer only through keepalive
// (tens of seconds by default), which would make the dead-peer tests slow or flaky.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "pipeline/tensor_channel.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TensorChannelOptions tcp_options(uint64_t max_chunk_bytes = uint64_t{1} << 30) {
  TensorChannelOptions options;
  options.ucx.transports = "tcp";
  options.max_chunk_bytes = max_chunk_bytes;
  return options;
}

// Byte i of the message with `seed`: differs per position and per message.
std::vector<uint8_t> pattern(uint64_t bytes, uint32_t seed) {
  std::vector<uint8_t> data(bytes);
  for (uint64_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>((i * 131 + seed * 7 + i / 251) & 0xff);
  return data;
}

struct ChannelPair {
  std::unique_ptr<TensorChannel> client;
  std::unique_ptr<TensorChannel> server;
};

// Connects a client and a server channel inside this process (client on a helper thread).
ChannelPair make_pair(const TensorChannelOptions& options) {
  auto listener = TensorListener::listen("127.0.0.1", 0, options);
  EXPECT_TRUE(listener.ok()) << listener.error().message;
  if (!listener.ok()) return {};
  EXPECT_NE(listener->port(), 0);
  ChannelPair pair;
  std::thread connector([&] {
    auto client = TensorChannel::connect("127.0.0.1", listener->port(), 5s, options);
    EXPECT_TRUE(client.ok()) << client.error().message;
    if (client.ok()) pair.client = std::make_unique<TensorChannel>(std::move(*client));
  });
  auto server = listener->accept(5s);
  connector.join();
  EXPECT_TRUE(server.ok()) << server.error().message;
  if (server.ok()) pair.server = std::make_unique<TensorChannel>(std::move(*server));
  return pair;
}

void round_trip(const TensorChannelOptions& options) {
  const std::vector<uint64_t> sizes = {0, 1, 4097, uint64_t{16} << 20};
  ChannelPair pair = make_pair(options);
  ASSERT_TRUE(pair.client && pair.server);
  std::thread sender([&] {
    for (size_t i = 0; i < sizes.size(); ++i) {
      const auto data = pattern(sizes[i], static_cast<uint32_t>(i));
      const Status sent = pair.client->send(i, data.data(), data.size(), 10s);
      EXPECT_TRUE(sent.ok()) << sent.error().message;
    }
  });
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<uint8_t> buffer(sizes[i] + 16, 0xAB);
    auto got = pair.server->recv(i, buffer.data(), buffer.size(), 10s);
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(*got, sizes[i]);
    const auto expected = pattern(sizes[i], static_cast<uint32_t>(i));
    EXPECT_EQ(0, std::memcmp(buffer.data(), expected.data(), sizes[i])) << "size " << sizes[i];
    EXPECT_EQ(buffer[sizes[i]], 0xAB) << "wrote past the message";
  }
  sender.join();
}

TEST(TensorChannel, RoundTripSizesAreByteExact) { round_trip(tcp_options()); }

TEST(TensorChannel, RoundTripInSmallChunks) { round_trip(tcp_options(/*max_chunk_bytes=*/1000)); }

// Shared memory beside tcp (tcp still carries the connection setup); also runs where sysv or
// posix is missing, UCX then keeps what it has.
TEST(TensorChannel, RoundTripWithSharedMemoryTransports) {
  TensorChannelOptions options = tcp_options();
  options.ucx.transports = "tcp,sysv,posix";
  round_trip(options);
}

TEST(TensorChannel, ClosedPeerMakesRecvUnavailableAfterItsLastMessage) {
  ChannelPair pair = make_pair(tcp_options());
  ASSERT_TRUE(pair.client && pair.server);
  const uint8_t last = 7;
  ASSERT_TRUE(pair.client->send(3, &last, 1, 1s).ok());
  (void)pair.client->close(100ms);  // the flush may time out: the server is not progressing
  EXPECT_FALSE(pair.client->is_open());
  uint8_t byte = 0;
  auto before_close = pair.server->recv(3, &byte, 1, 2s);  // sent before the goodbye: arrives
  ASSERT_TRUE(before_close.ok()) << before_close.error().message;
  EXPECT_EQ(byte, last);
  const auto start = Clock::now();
  auto got = pair.server->recv(1, &byte, 1, 5s);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, ErrorCode::unavailable) << got.error().message;
  EXPECT_LT(Clock::now() - start, 3s);
  const Status sent = pair.client->send(1, &byte, 1, 1s);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code, ErrorCode::unavailable);
}

TEST(TensorChannel, SendTimeoutClosesChannelAndTellsThePeer) {
  ChannelPair pair = make_pair(tcp_options());
  ASSERT_TRUE(pair.client && pair.server);
  // 16 MiB goes by rendezvous: it can not complete while the server posts no receive.
  const std::vector<uint8_t> data(uint64_t{16} << 20, 1);
  const auto start = Clock::now();
  const Status sent = pair.client->send(5, data.data(), data.size(), 200ms);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code, ErrorCode::timeout) << sent.error().message;
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_FALSE(pair.client->is_open());
  uint8_t byte = 0;
  auto got = pair.server->recv(6, &byte, 1, 5s);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, ErrorCode::unavailable) << got.error().message;
}

TEST(TensorChannel, SeveralTagsInFlightReceivedOutOfOrder) {
  ChannelPair pair = make_pair(tcp_options());
  ASSERT_TRUE(pair.client && pair.server);
  // Small payloads: eager sends complete without the receiver (see the NOTE in the header).
  const std::vector<uint64_t> tags = {10, 11, 12, 13, 11};
  for (size_t i = 0; i < tags.size(); ++i) {
    const auto data = pattern(512 + i, static_cast<uint32_t>(i));
    ASSERT_TRUE(pair.client->send(tags[i], data.data(), data.size(), 2s).ok());
  }
  // Receive in another order; the two tag-11 messages arrive in send order.
  const std::vector<size_t> order = {3, 1, 4, 2, 0};
  for (size_t index : order) {
    auto size = pair.server->probe(tags[index], 2s);
    ASSERT_TRUE(size.ok()) << size.error().message;
    EXPECT_EQ(*size, 512 + index);
    std::vector<uint8_t> buffer(1024);
    auto got = pair.server->recv(tags[index], buffer.data(), buffer.size(), 2s);
    ASSERT_TRUE(got.ok()) << got.error().message;
    ASSERT_EQ(*got, 512 + index);
    const auto expected = pattern(512 + index, static_cast<uint32_t>(index));
    EXPECT_EQ(0, std::memcmp(buffer.data(), expected.data(), *got)) << "tag " << tags[index];
  }
}

TEST(TensorChannel, TooSmallBufferIsAClearErrorAndKeepsTheMessage) {
  ChannelPair pair = make_pair(tcp_options());
  ASSERT_TRUE(pair.client && pair.server);
  const auto data = pattern(300, 1);
  ASSERT_TRUE(pair.client->send(7, data.data(), data.size(), 2s).ok());
  std::vector<uint8_t> buffer(300);
  auto small = pair.server->recv(7, buffer.data(), 299, 2s);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(small.error().message.find("300 bytes"), std::string::npos) << small.error().message;
  auto got = pair.server->recv(7, buffer.data(), buffer.size(), 2s);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(buffer, data);
}

TEST(TensorChannel, ReservedTagIsRejected) {
  ChannelPair pair = make_pair(tcp_options());
  ASSERT_TRUE(pair.client && pair.server);
  const Status sent = pair.client->send(TensorChannel::kMaxTag + 1, nullptr, 0, 1s);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code, ErrorCode::invalid_argument);
}

TEST(TensorChannel, RecvWithoutSenderTimesOutAndChannelStaysUsable) {
  ChannelPair pair = make_pair(tcp_options());
  ASSERT_TRUE(pair.client && pair.server);
  uint8_t byte = 0;
  const auto start = Clock::now();
  auto got = pair.server->recv(1, &byte, 1, 200ms);
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, ErrorCode::timeout) << got.error().message;
  EXPECT_GE(elapsed, 190ms);
  EXPECT_LT(elapsed, 2s);
  const uint8_t value = 42;
  ASSERT_TRUE(pair.client->send(1, &value, 1, 1s).ok());
  got = pair.server->recv(1, &byte, 1, 2s);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(byte, 42);
}

TEST(TensorChannel, ConnectWhereNothingListensFailsWithinTimeout) {
  uint16_t port = 0;
  {  // An ephemeral port that was just free: nobody listens there any more.
    auto listener = TensorListener::listen("127.0.0.1", 0, tcp_options());
    ASSERT_TRUE(listener.ok()) << listener.error().message;
    port = listener->port();
  }
  const auto start = Clock::now();
  auto channel = TensorChannel::connect("127.0.0.1", port, 3s, tcp_options());
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(channel.ok());
  EXPECT_TRUE(channel.error().code == ErrorCode::unavailable ||
              channel.error().code == ErrorCode::timeout)
      << channel.error().message;
  EXPECT_NE(channel.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << channel.error().message;
  EXPECT_LT(elapsed, 4s);
}

// A fork()ed child listens on an ephemeral port (written to a pipe), then runs `child_body` on
// its channel; it never exits by itself, the parent kills it.
template <class Body>
pid_t spawn_peer(uint16_t& port, Body child_body) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    auto listener = TensorListener::listen("127.0.0.1", 0, tcp_options());
    uint16_t bound = listener.ok() ? listener->port() : 0;
    if (write(fds[1], &bound, sizeof(bound)) != sizeof(bound) || bound == 0) _exit(1);
    auto channel = listener->accept(10s);
    if (!channel.ok()) _exit(2);
    child_body(*channel);
    _exit(3);
  }
  close(fds[1]);
  port = 0;
  if (read(fds[0], &port, sizeof(port)) != sizeof(port)) port = 0;
  close(fds[0]);
  return pid;
}

void kill_peer(pid_t pid) {
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
}

TEST(TensorChannel, KilledSenderMakesRecvFailQuickly) {
  uint16_t port = 0;
  const pid_t pid = spawn_peer(port, [](TensorChannel& channel) {
    const auto data = pattern(1 << 16, 5);
    for (uint64_t tag = 0;; ++tag) {
      if (!channel.send(tag, data.data(), data.size(), 30s).ok()) return;
    }
  });
  ASSERT_GT(pid, 0);
  ASSERT_NE(port, 0);
  auto channel = TensorChannel::connect("127.0.0.1", port, 5s, tcp_options());
  ASSERT_TRUE(channel.ok()) << channel.error().message;
  std::vector<uint8_t> buffer(1 << 16);
  for (uint64_t tag = 0; tag < 4; ++tag) {
    ASSERT_TRUE(channel->recv(tag, buffer.data(), buffer.size(), 5s).ok());
  }
  kill_peer(pid);
  const auto start = Clock::now();
  Result<uint64_t> got = uint64_t{0};
  for (uint64_t tag = 4; got.ok() && Clock::now() - start < 10s; ++tag) {
    got = channel->recv(tag, buffer.data(), buffer.size(), 10s);  // drains what already arrived
  }
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, ErrorCode::unavailable) << got.error().message;
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_FALSE(channel->is_open());
  const Status sent = channel->send(0, buffer.data(), 16, 1s);
  EXPECT_EQ(sent.ok() ? ErrorCode::internal : sent.error().code, ErrorCode::unavailable);
}

TEST(TensorChannel, KilledReceiverMakesSendFailQuickly) {
  uint16_t port = 0;
  const pid_t pid = spawn_peer(port, [](TensorChannel& channel) {
    std::vector<uint8_t> buffer(4 << 20);
    for (uint64_t tag = 0;; ++tag) {
      if (!channel.recv(tag, buffer.data(), buffer.size(), 30s).ok()) return;
    }
  });
  ASSERT_GT(pid, 0);
  ASSERT_NE(port, 0);
  auto channel = TensorChannel::connect("127.0.0.1", port, 5s, tcp_options());
  ASSERT_TRUE(channel.ok()) << channel.error().message;
  const auto data = pattern(4 << 20, 9);  // rendezvous sized: completes only with a live receiver
  for (uint64_t tag = 0; tag < 3; ++tag) {
    ASSERT_TRUE(channel->send(tag, data.data(), data.size(), 5s).ok());
  }
  kill_peer(pid);
  const auto start = Clock::now();
  Status sent;
  for (uint64_t tag = 3; sent.ok() && Clock::now() - start < 10s; ++tag) {
    sent = channel->send(tag, data.data(), data.size(), 10s);
  }
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code, ErrorCode::unavailable) << sent.error().message;
  EXPECT_LT(Clock::now() - start, 5s);
}

}  // namespace
}  // namespace troupe
