// The `troupe` binary as a user meets it: help works, bad input is one clear line and exit != 0,
// and `troupe serve` shuts down gracefully on SIGTERM.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace {

struct CliRun {
  int exit_code;
  std::string output;  // stdout + stderr
};

CliRun run_troupe(const std::string& args) {
  std::string command = std::string(TROUPE_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

size_t count_lines(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

TEST(Cli, HelpOnEverySubcommand) {
  for (std::string sub : {"", "serve", "head", "worker", "generate", "bench", "tokenize"}) {
    CliRun run = run_troupe(sub + " --help");
    EXPECT_EQ(run.exit_code, 0) << sub << ": " << run.output;
    EXPECT_NE(run.output.find("Usage:"), std::string::npos) << sub;
    if (!sub.empty()) EXPECT_NE(run.output.find("--log-level"), std::string::npos) << sub;
  }
}

TEST(Cli, BadInputIsOneLineAndNonZero) {
  const char* cases[][2] = {
      {"serve --no-such-flag", "--no-such-flag"},
      {"serve --port abc", "--port"},
      {"serve --port 0", "--port"},
      {"serve --block-size 3", "--block-size"},
      {"serve --config /nonexistent/troupe.toml", "/nonexistent/troupe.toml"},
      {"serve --log-level loud", "--log-level"},
      {"serve --shutdown-timeout -1", "--shutdown-timeout"},
      {"serve --max-waiting-requests -1", "--max-waiting-requests"},
      {"serve --request-timeout -2", "--request-timeout"},
      {"worker --join nohostport", "--join"},
      {"frobnicate", "frobnicate"},
      {"", "subcommand"},
      {"generate --model /nonexistent/model --prompt-ids 1,2", "/nonexistent/model"},
      {"generate --model /nonexistent/model --prompt-ids 1,x", "x"},
      {"tokenize --model /nonexistent/model --text hi", "/nonexistent/model"},
  };
  for (const auto& c : cases) {
    CliRun run = run_troupe(c[0]);
    EXPECT_NE(run.exit_code, 0) << c[0];
    EXPECT_LT(run.exit_code, 128) << c[0] << " crashed";
    EXPECT_EQ(count_lines(run.output), 1u) << c[0] << ": " << run.output;
    EXPECT_NE(run.output.find("troupe: error:"), std::string::npos) << run.output;
    EXPECT_NE(run.output.find(c[1]), std::string::npos) << c[0] << ": " << run.output;
  }
}

TEST(Cli, ConfigFileKeysAreFlagsAndTheCommandLineWins) {
  const std::string path = testing::TempDir() + "/troupe_cli_test.toml";
  std::ofstream(path) << "port = 0\n";
  CliRun from_file = run_troupe("serve --config " + path);
  EXPECT_EQ(from_file.exit_code, 2);
  EXPECT_NE(from_file.output.find("--port: must be in"), std::string::npos) << from_file.output;

  // The file's bad block size is overridden by a good one, so the next check (port) speaks.
  std::ofstream(path) << "block-size = 5\n";
  CliRun overridden = run_troupe("serve --config " + path + " --block-size 16 --port 0");
  EXPECT_EQ(overridden.exit_code, 2);
  EXPECT_NE(overridden.output.find("--port"), std::string::npos) << overridden.output;

  std::ofstream(path) << "no-such-key = 1\n";
  CliRun unknown = run_troupe("serve --config " + path);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("no-such-key"), std::string::npos) << unknown.output;
}

// The "token_ids":[...] of a `generate --json` line ("" when absent).
std::string token_ids_of(const std::string& output) {
  const size_t begin = output.find("\"token_ids\":[");
  if (begin == std::string::npos) return "";
  return output.substr(begin, output.find(']', begin) - begin + 1);
}

TEST(Cli, GenerateWithTwoTensorParallelRanksMatchesOne) {
  for (const char* fixture : {"llama-tiny", "deepseek-v3-tiny"}) {
    SCOPED_TRACE(fixture);
    const std::string base = std::string("generate --model ") + TROUPE_SOURCE_DIR + "/tests/fixtures/models/" +
                             fixture + " --prompt-ids 1,2,3,4 --max-tokens 12 --temperature 0 --ignore-eos --json "
                             "--device cpu";
    CliRun one = run_troupe(base + " --tp 1");
    CliRun two = run_troupe(base + " --tp 2");
    ASSERT_EQ(one.exit_code, 0) << one.output;
    ASSERT_EQ(two.exit_code, 0) << two.output;
    EXPECT_NE(two.output.find("tensor parallel: 2 ranks"), std::string::npos) << "--tp 2 was ignored:\n" << two.output;
    ASSERT_FALSE(token_ids_of(one.output).empty()) << one.output;
    EXPECT_EQ(token_ids_of(two.output), token_ids_of(one.output));
  }
}


// --- `troupe serve` over loopback, with plain sockets (this suite does not link an HTTP client).

// A port the kernel just handed out and took back: free unless another process grabs it now.
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Sends one HTTP/1.1 request (Connection: close); -1 when nothing listens.
int send_request(int port, const std::string& method, const std::string& path, const std::string& body = "") {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  std::ostringstream req;
  req << method << " " << path << " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!body.empty()) req << "Content-Type: application/json\r\nContent-Length: " << body.size() << "\r\n";
  req << "\r\n" << body;
  const std::string text = req.str();
  if (send(fd, text.data(), text.size(), MSG_NOSIGNAL) != ssize_t(text.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until the server closes (or `until` shows up); bounded by the socket's 10 s timeout.
std::string read_reply(int fd, const std::string& until = "") {
  std::string out;
  std::array<char, 4096> buf;
  while (until.empty() || out.find(until) == std::string::npos) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    out.append(buf.data(), size_t(n));
  }
  return out;
}

std::string http_exchange(int port, const std::string& method, const std::string& path, const std::string& body = "") {
  int fd = send_request(port, method, path, body);
  if (fd < 0) return "";
  std::string reply = read_reply(fd);
  close(fd);
  return reply;
}

int status_of(const std::string& reply) { return reply.size() > 12 ? std::atoi(reply.c_str() + 9) : 0; }

// waitpid with a deadline; -1 when the child is still running after it.
int wait_exit_code(pid_t pid, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

TEST(Cli, ServeDrainsOnSigtermAndExitsZero) {
  const int port = free_port();
  const std::string log_path = testing::TempDir() + "/troupe_serve_sigterm.log";
  const std::string model = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";
  const std::string port_text = std::to_string(port);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FILE* log = freopen(log_path.c_str(), "w", stdout);
    dup2(fileno(log), 2);
    // --max-num-seqs 1 runs the stream's 16 choices one after another: a slow stream.
    execl(TROUPE_BINARY, TROUPE_BINARY, "serve", "--model", model.c_str(), "--served-model-name", "tiny", "--port",
          port_text.c_str(), "--device", "cpu", "--num-threads", "1", "--max-num-seqs", "1", "--num-kv-blocks", "128",
          "--shutdown-timeout", "2", static_cast<char*>(nullptr));
    _exit(127);
  }
  auto log_text = [&] {
    std::ifstream in(log_path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (status_of(http_exchange(port, "GET", "/health")) != 200 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (status_of(http_exchange(port, "GET", "/health")) != 200) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    FAIL() << "troupe serve did not become ready:\n" << log_text();
  }

  const std::string stream_body =
      R"({"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":480,"n":16,)"
      R"("ignore_eos":true,"stream":true})";
  int stream = send_request(port, "POST", "/v1/chat/completions", stream_body);
  ASSERT_GE(stream, 0);
  std::string streamed = read_reply(stream, "\"content\":\"");  // generation has started
  ASSERT_EQ(status_of(streamed), 200) << streamed;
  ASSERT_EQ(kill(pid, SIGTERM), 0);

  // Readiness goes first: /health and new work answer 503 (with Retry-After) while the stream runs.
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string health;
  do {
    health = http_exchange(port, "GET", "/health");
  } while (status_of(health) == 200 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(status_of(health), 503) << health;
  const std::string refused = http_exchange(
      port, "POST", "/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":2})");
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
  EXPECT_NE(refused.find("\"type\":\"ServiceUnavailableError\""), std::string::npos) << refused;

  streamed += read_reply(stream);
  close(stream);
  EXPECT_NE(streamed.find("data: [DONE]"), std::string::npos) << streamed.substr(streamed.size() > 400 ? streamed.size() - 400 : 0);
  const int exit_code = wait_exit_code(pid, std::chrono::seconds(15));
  if (exit_code == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  EXPECT_EQ(exit_code, 0) << log_text();
  EXPECT_NE(log_text().find("SIGTERM: shutting down"), std::string::npos) << log_text();
}

}  // namespace
