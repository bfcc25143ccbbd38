// Hand-off time of one micro-batch's hidden states [num_tokens, hidden] between two processes
// over TensorChannel (UCX) on loopback. A fork()ed child receives each payload and answers with a
// 0-byte message; the parent times send -> answer. "handoff" thus includes one empty message on
// the way back; the 0x0 row measures that empty round trip alone.
//
//   ./build/bench/ucx_handoff_bench [--iterations N] [--warmup N] [--transports tcp,sysv,posix]
//                                   [--no-wakeup] [--out bench/results/ucx_handoff_<date>.json]
// Writes BenchRecords (median and p90 in ms, GB/s at the median) through write_bench_records
// and prints a table; a plain TCP socket doing the same hand-off between two threads is the
// roofline.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/tensor_channel.hpp"
#include "runtime/bench_record.hpp"

namespace {

using namespace troupe;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Case {
  uint64_t num_tokens;
  uint64_t hidden;
  const char* dtype;
  uint64_t dtype_bytes;
  uint64_t bytes() const { return num_tokens * hidden * dtype_bytes; }
  std::string name() const {
    return std::to_string(num_tokens) + "x" + std::to_string(hidden) + "_" + dtype;
  }
};

std::vector<Case> cases() {
  std::vector<Case> all = {{0, 0, "empty", 1}};
  for (uint64_t num_tokens : {1, 16, 512}) {
    all.push_back({num_tokens, 4096, "bf16", 2});
    all.push_back({num_tokens, 4096, "fp32", 4});
  }
  return all;
}

struct Args {
  int iterations = 200;
  int warmup = 20;
  std::string transports;
  bool use_wakeup = true;
  std::string out;
  std::string command;
};

// "0.52 0.48 0.40" from /proc/loadavg, or "unknown".
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  if (!(in >> one >> five >> fifteen)) return "unknown";
  return one + " " + five + " " + fifteen;
}

std::string host_name() {
  char name[256] = {};
  return gethostname(name, sizeof(name) - 1) == 0 ? name : "unknown";
}

// Child: accepts the parent, then for every case and iteration receives a payload and answers.
[[noreturn]] void run_receiver(int port_fd, const Args& args, const TensorChannelOptions& options) {
  auto listener = TensorListener::listen("127.0.0.1", 0, options);
  const uint16_t port = listener.ok() ? listener->port() : 0;
  if (write(port_fd, &port, sizeof(port)) != sizeof(port) || port == 0) _exit(1);
  close(port_fd);
  auto channel = listener->accept(30s);
  if (!channel.ok()) _exit(2);
  uint64_t max_bytes = 0;
  for (const Case& c : cases()) max_bytes = std::max(max_bytes, c.bytes());
  std::vector<uint8_t> buffer(std::max<uint64_t>(max_bytes, 1));
  const int total = args.warmup + args.iterations;
  for (size_t c = 0; c < cases().size(); ++c) {
    for (int i = 0; i < total; ++i) {
      const uint64_t tag = c * 1000000 + i;
      auto got = channel->recv(tag, buffer.data(), buffer.size(), 30s);
      if (!got.ok()) {
        std::fprintf(stderr, "receiver: %s\n", got.error().message.c_str());
        _exit(3);
      }
      const Status sent = channel->send(tag, nullptr, 0, 30s);
      if (!sent.ok()) {
        std::fprintf(stderr, "receiver: %s\n", sent.error().message.c_str());
        _exit(4);
      }
    }
  }
  (void)channel->close(5s);
  _exit(0);
}

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(q * (values.size() - 1) + 0.5));
  return values[index];
}

// Roofline: the same hand-off (payload, then a 1-byte answer) over a plain TCP loopback socket
// between two threads. Returns per-iteration milliseconds (empty on a socket error).
std::vector<double> socket_handoff_ms(uint64_t bytes, int warmup, int iterations) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(listener);
    return {};
  }
  const int total = warmup + iterations;
  std::thread receiver([&] {
    const int fd = accept(listener, nullptr, nullptr);
    std::vector<uint8_t> buffer(std::max<uint64_t>(bytes, 1));
    for (int i = 0; i < total && fd >= 0; ++i) {
      for (uint64_t got = 0; got < bytes;) {
        const ssize_t n = read(fd, buffer.data() + got, bytes - got);
        if (n <= 0) break;
        got += n;
      }
      const uint8_t ack = 1;
      if (write(fd, &ack, 1) != 1) break;
    }
    if (fd >= 0) close(fd);
  });
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  std::vector<double> times_ms;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    std::vector<uint8_t> payload(std::max<uint64_t>(bytes, 1), 3);
    for (int i = 0; i < total; ++i) {
      const auto start = Clock::now();
      bool ok = true;
      for (uint64_t sent = 0; sent < bytes && ok;) {
        const ssize_t n = write(fd, payload.data() + sent, bytes - sent);
        ok = n > 0;
        if (ok) sent += n;
      }
      uint8_t ack = 0;
      if (!ok || read(fd, &ack, 1) != 1) {
        times_ms.clear();
        break;
      }
      if (i >= warmup) {
        times_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    }
  }
  close(fd);
  receiver.join();
  close(listener);
  return times_ms;
}

// Reports how the receiver ended, after a failure on the sender's side.
int fail(pid_t pid) {
  int status = 0;
  kill(pid, SIGTERM);
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) std::fprintf(stderr, "receiver died of signal %d\n", WTERMSIG(status));
  if (WIFEXITED(status)) std::fprintf(stderr, "receiver exited with %d\n", WEXITSTATUS(status));
  return 1;
}

int run(const Args& args) {
  TensorChannelOptions options;
  options.ucx.transports = args.transports;
  options.ucx.use_wakeup = args.use_wakeup;
  int fds[2];
  if (pipe(fds) != 0) return 1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    run_receiver(fds[1], args, options);
  }
  close(fds[1]);
  uint16_t port = 0;
  if (read(fds[0], &port, sizeof(port)) != sizeof(port) || port == 0) {
    std::fprintf(stderr, "receiver failed to listen\n");
    return 1;
  }
  close(fds[0]);
  auto channel = TensorChannel::connect("127.0.0.1", port, 10s, options);
  if (!channel.ok()) {
    std::fprintf(stderr, "%s\n", channel.error().message.c_str());
    return 1;
  }

  const char* env_tls = std::getenv("UCX_TLS");
  const std::string tls = !args.transports.empty() ? args.transports : env_tls ? env_tls : "default";
  // The load average matters on shared hosts: a waiting stage blocks in poll() and its wake-up
  // latency grows with the run queue.
  const std::string device = "CPU loopback, 2 processes, " +
                             std::to_string(std::thread::hardware_concurrency()) + " cores, host " +
                             host_name() + ", load " + load_average() + ", UCX_TLS=" + tls;
  std::vector<BenchRecord> records;
  auto add = [&](const std::string& metric, double value, const char* unit) {
    BenchRecord record;
    record.metric = metric;
    record.value = value;
    record.unit = unit;
    records.push_back(record);
  };

  std::printf("%-16s %12s %12s %12s %10s\n", "case", "bytes", "median ms", "p90 ms", "GB/s");
  const auto all = cases();
  for (size_t c = 0; c < all.size(); ++c) {
    std::vector<uint8_t> payload(std::max<uint64_t>(all[c].bytes(), 1));
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 31);
    std::vector<double> times_ms;
    for (int i = 0; i < args.warmup + args.iterations; ++i) {
      const uint64_t tag = c * 1000000 + i;
      const auto start = Clock::now();
      Status sent = channel->send(tag, payload.data(), all[c].bytes(), 30s);
      if (!sent.ok()) {
        std::fprintf(stderr, "%s: send %d: %s\n", all[c].name().c_str(), i, sent.error().message.c_str());
        return fail(pid);
      }
      auto ack = channel->recv(tag, nullptr, 0, 30s);
      if (!ack.ok()) {
        std::fprintf(stderr, "%s: ack %d: %s\n", all[c].name().c_str(), i, ack.error().message.c_str());
        return fail(pid);
      }
      if (i >= args.warmup) {
        times_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    }
    const double median = percentile(times_ms, 0.5);
    const double p90 = percentile(times_ms, 0.9);
    const double gbps = all[c].bytes() / (median * 1e-3) / 1e9;
    std::printf("%-16s %12llu %12.4f %12.4f %10.3f\n", all[c].name().c_str(),
                static_cast<unsigned long long>(all[c].bytes()), median, p90, gbps);
    const std::string prefix = "ucx_handoff/" + tls + "/" + all[c].name();
    add(prefix + "/median", median, "ms");
    add(prefix + "/p90", p90, "ms");
    if (all[c].bytes() > 0) add(prefix + "/bandwidth_at_median", gbps, "GB/s");
  }
  (void)channel->close(5s);
  int status = 0;
  waitpid(pid, &status, 0);

  std::printf("roofline: plain TCP loopback socket, same hand-off\n");
  for (const Case& c : all) {
    if (c.bytes() == 0) continue;
    const auto times_ms = socket_handoff_ms(c.bytes(), args.warmup, args.iterations);
    if (times_ms.empty()) continue;
    const double median = percentile(times_ms, 0.5);
    std::printf("%-16s %12llu %12.4f %12.4f %10.3f\n", c.name().c_str(),
                static_cast<unsigned long long>(c.bytes()), median, percentile(times_ms, 0.9),
                c.bytes() / (median * 1e-3) / 1e9);
    add("tcp_socket_roofline/" + c.name() + "/median", median, "ms");
    add("tcp_socket_roofline/" + c.name() + "/bandwidth_at_median", c.bytes() / (median * 1e-3) / 1e9,
        "GB/s");
  }

  auto written = write_bench_records(records, "ucx_handoff", args.out, args.command, device);
  if (!written.ok()) {
    std::fprintf(stderr, "%s\n", written.error().message.c_str());
    return 1;
  }
  std::printf("wrote %s (%zu records)\n", written.value().c_str(), records.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 0; i < argc; ++i) {
    if (i > 0) args.command += ' ';
    args.command += argv[i];
  }
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const bool has_value = i + 1 < argc;
    if (flag == "--iterations" && has_value) {
      args.iterations = std::max(1, std::atoi(argv[++i]));
    } else if (flag == "--warmup" && has_value) {
      args.warmup = std::max(0, std::atoi(argv[++i]));
    } else if (flag == "--transports" && has_value) {
      args.transports = argv[++i];
    } else if (flag == "--no-wakeup") {
      args.use_wakeup = false;
    } else if (flag == "--out" && has_value) {
      args.out = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--iterations N] [--warmup N] [--transports TLS] [--no-wakeup] [--out PATH]\n",
                   argv[0]);
      return 2;
    }
  }
  return run(args);
}
