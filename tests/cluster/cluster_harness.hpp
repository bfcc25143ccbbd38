#pragma once
// Real `troupe head` / `troupe worker` processes on 127.0.0.1 for the cluster tests. Every process
// runs in its own process group; the harness SIGKILLs all of them (supervisor and child) at the end.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace troupe::testing_cluster {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A port that was free a moment ago, drawn from below Linux's ephemeral range (32768+): ports
// that bind(0) hands out (UCX listeners, client sockets, other tests' servers) come from that
// range, so a port chosen here is not taken by them between this call and the server's bind.
inline int free_port() {
  static std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int> pick(20000, 32000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = pick(rng);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(uint16_t(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    if (ok) return port;
  }
  // Everything tried was busy: fall back to one the kernel picks.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Polls `done` every 50 ms until it holds or `timeout` passes; returns whether it held.
inline bool wait_until(const std::function<bool()>& done, milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return done();
}

class Cluster {
 public:
  explicit Cluster(std::string name)
      : dir_(::testing::TempDir() + "/troupe_cluster_" + name + "_" + std::to_string(::getpid())),
        port_(free_port()) {
    std::filesystem::create_directories(dir_);
  }
  ~Cluster() {
    for (pid_t pid : pids_) ::kill(-pid, SIGKILL);
    for (pid_t pid : pids_) ::waitpid(pid, nullptr, 0);
  }

  int port() const { return port_; }
  std::string join() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string status_path() const { return dir_ + "/status.json"; }
  std::string log_path(const std::string& name) const { return dir_ + "/" + name + ".log"; }
  std::string log(const std::string& name) const { return read_file(log_path(name)); }

  // Starts `troupe ARGS...` with stdout+stderr in log_path(name); returns its pid. A `wrapper`
  // (an absolute path, then its arguments) runs it instead: `WRAPPER... troupe ARGS...`, e.g. inside
  // a network namespace (tests/cluster/network_lab.hpp); it must exec troupe, not fork it.
  pid_t start(const std::string& name, std::vector<std::string> args, const std::string& token,
              std::vector<std::string> wrapper = {}) {
    const std::string log = log_path(name);
    const std::string status = status_path();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::setenv("TROUPE_TOKEN", token.c_str(), 1);
      ::setenv("TROUPE_HEARTBEAT_MS", "200", 1);
      ::setenv("TROUPE_HEARTBEAT_TIMEOUT_MS", "1500", 1);
      ::setenv("TROUPE_CLUSTER_STATUS_FILE", status.c_str(), 1);
      std::vector<char*> argv;
      std::string binary = TROUPE_BINARY;
      for (std::string& arg : wrapper) argv.push_back(arg.data());
      argv.push_back(binary.data());
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::setpgid(pid, pid);
    pids_.push_back(pid);
    return pid;
  }

  pid_t start_head(int64_t pipeline_parallel_size, int64_t replicas, const std::string& token) {
    head_pid_ = start("head",
                      {"head", "--port", std::to_string(port_), "--pp", std::to_string(pipeline_parallel_size),
                       "--replicas", std::to_string(replicas)},
                      token);
    return head_pid_;
  }
  pid_t head_pid() const { return head_pid_; }
  pid_t start_worker(const std::string& name, const std::string& token, bool supervise = true,
                     std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"worker", "--join", join()};
    if (!supervise) args.push_back("--no-supervise");
    for (auto& arg : extra) args.push_back(std::move(arg));
    return start(name, args, token);
  }
  // A head that serves `model` over HTTP on `http_port` with `replicas` groups of `pp` stages.
  pid_t start_serving_head(const std::string& model, int64_t pp, int64_t replicas, int http_port,
                           const std::string& token, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"head", "--port", std::to_string(port_), "--http-port",
                                     std::to_string(http_port), "--model", model, "--pp", std::to_string(pp),
                                     "--replicas", std::to_string(replicas)};
    for (auto& arg : extra) args.push_back(std::move(arg));
    head_pid_ = start("head", args, token);
    return head_pid_;
  }

  // The head's status JSON, or null while it has not been written.
  nlohmann::json status() const {
    std::string text = read_file(status_path());
    if (text.empty()) return nullptr;
    return nlohmann::json::parse(text, nullptr, false);
  }

  // Waits up to `timeout` for `pid` to exit; returns its exit code, or -1 when it did not exit.
  static int wait_exit(pid_t pid, milliseconds timeout) {
    int status = 0;
    pid_t done = 0;
    wait_until([&] { return (done = ::waitpid(pid, &status, WNOHANG)) == pid; }, timeout);
    if (done != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  std::string dir_;
  int port_;
  std::vector<pid_t> pids_;
  pid_t head_pid_ = 0;
};

// HTTP helpers against a server on 127.0.0.1.
inline bool wait_healthy(int port, milliseconds timeout) {
  return wait_until(
      [&] {
        httplib::Client client("127.0.0.1", port);
        client.set_connection_timeout(0, 200000);
        auto res = client.Get("/health");
        return res && res->status == 200;
      },
      timeout);
}

inline std::string scrape_metrics(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(5, 0);
  auto res = client.Get("/metrics");
  return res && res->status == 200 ? res->body : "";
}

// The first sample of `name` (labelled or not) in a Prometheus text body; -1 when absent.
inline double metric_in(const std::string& body, const std::string& name) {
  for (size_t at = body.find("\n" + name); at != std::string::npos; at = body.find("\n" + name, at + 1)) {
    const char next = body[at + 1 + name.size()];
    if (next != ' ' && next != '{') continue;
    const size_t end = body.find('\n', at + 1);
    const std::string line = body.substr(at + 1, end - at - 1);
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

inline double metric(int port, const std::string& name) { return metric_in(scrape_metrics(port), name); }

// Status helpers.
inline int64_t num_active(const nlohmann::json& s) { return s.is_object() ? s["num_active_nodes"].get<int64_t>() : 0; }
inline bool group_is(const nlohmann::json& s, int group, const std::string& state, uint64_t epoch) {
  return s.is_object() && s["groups"][group]["state"] == state && s["groups"][group]["epoch"] == epoch;
}
// Ready again at `min_epoch` or later.
inline bool group_ready_since(const nlohmann::json& s, int group, uint64_t min_epoch) {
  return s.is_object() && s["groups"][group]["state"] == "ready" && s["groups"][group]["epoch"].is_number_unsigned() &&
         s["groups"][group]["epoch"].get<uint64_t>() >= min_epoch;
}
// The group's epoch while it is ready, else 0 (epochs start at 1). Start-up waits take any epoch:
// a group the supervisor already restarted while starting (seen once: a stage's ucp_worker_create
// failed with "No such device") is ready too, at epoch 2. A test that later expects a restart, or
// none, compares with the epoch it saw here rather than with 1 or 2.
inline uint64_t group_ready_epoch(const nlohmann::json& s, int group) {
  return group_ready_since(s, group, 1) ? s["groups"][group]["epoch"].get<uint64_t>() : 0;
}
inline const nlohmann::json* node_at(const nlohmann::json& s, int group, int stage) {
  for (const auto& node : s["nodes"])
    if (node["state"] == "active" && node["group_id"] == group && node["stage_index"] == stage) return &node;
  return nullptr;
}

}  // namespace troupe::testing_cluster
