// deploy/grafana-dashboard.json against what troupe exports: every metric name a panel (or the
// model variable) queries appears in a live server's /metrics; with promtool installed, the
// expressions parse as PromQL and the exposition passes `promtool check metrics`; with Debian's
// prometheus installed, a real Prometheus scrapes a live server and every panel's query returns
// data (`promtool query instant`).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

namespace fs = std::filesystem;

json load_dashboard() {
  std::ifstream in(std::string(TROUPE_SOURCE_DIR) + "/deploy/grafana-dashboard.json");
  return json::parse(in, nullptr, false);
}

// Every PromQL expression of the dashboard: panel targets and the templating queries.
std::vector<std::string> dashboard_expressions(const json& dashboard) {
  std::vector<std::string> exprs;
  for (const auto& panel : dashboard.value("panels", json::array()))
    for (const auto& target : panel.value("targets", json::array()))
      if (target.contains("expr")) exprs.push_back(target["expr"].get<std::string>());
  for (const auto& var : dashboard["templating"].value("list", json::array()))
    if (var.contains("definition")) exprs.push_back(var["definition"].get<std::string>());
  return exprs;
}

// Sample names of a Prometheus text exposition (histograms give their _bucket/_sum/_count).
std::set<std::string> exported_names(const std::string& text) {
  std::set<std::string> names;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

std::string scrape_after_one_request(TestServer& server) {
  auto c = server.client();
  auto reply = post_json(c, "/v1/chat/completions",
                         json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 4}});
  EXPECT_EQ(reply.status, 200) << reply.raw;
  auto res = c.Get("/metrics");
  return res && res->status == 200 ? res->body : "";
}

TEST(GrafanaDashboard, EveryPanelQueriesMetricsTroupeExports) {
  json dashboard = load_dashboard();
  ASSERT_TRUE(dashboard.is_object()) << "deploy/grafana-dashboard.json is not JSON";
  ASSERT_GE(dashboard["panels"].size(), 8u);
  TestServer server;
  const std::set<std::string> exported = exported_names(scrape_after_one_request(server));
  ASSERT_FALSE(exported.empty());
  const std::regex metric(R"(troupe:[a-zA-Z_:][a-zA-Z0-9_:]*)");
  size_t num_names = 0;
  for (const auto& panel : dashboard["panels"]) {
    ASSERT_FALSE(panel.value("targets", json::array()).empty()) << panel.value("title", "");
  }
  for (const std::string& expr : dashboard_expressions(dashboard)) {
    auto begin = std::sregex_iterator(expr.begin(), expr.end(), metric);
    ASSERT_NE(begin, std::sregex_iterator()) << "no troupe: metric in " << expr;
    for (auto it = begin; it != std::sregex_iterator(); ++it, ++num_names)
      EXPECT_TRUE(exported.count(it->str())) << it->str() << " (in " << expr << ") is not exported";
  }
  EXPECT_GE(num_names, 20u);
}

TEST(GrafanaDashboard, VllmNamesAreExported) {
  TestServer server;
  const std::set<std::string> exported = exported_names(scrape_after_one_request(server));
  for (const char* name :
       {"e2e_request_latency_seconds", "time_to_first_token_seconds", "time_per_output_token_seconds",
        "request_queue_time_seconds", "request_prefill_time_seconds", "request_decode_time_seconds",
        "request_inference_time_seconds", "request_prompt_tokens", "request_generation_tokens",
        "iteration_tokens_total"})
    EXPECT_TRUE(exported.count(std::string("troupe:") + name + "_bucket")) << name;
  for (const char* name : {"cache_config_info", "num_requests_running", "num_requests_waiting", "gpu_cache_usage_perc",
                           "kv_cache_usage_perc", "num_preemptions_total"})
    EXPECT_TRUE(exported.count(std::string("troupe:") + name)) << name;
}

std::string find_tool(const char* name) {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    fs::path p = fs::path(dir) / name;
    if (fs::exists(p)) return p.string();
  }
  return "";
}

struct CommandRun {
  int exit_code = -1;
  std::string output;
};

// `command` through the shell: its exit code and its standard output.
CommandRun run_and_read(const std::string& command) {
  CommandRun run;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) run.output.append(buf, n);
    const int status = ::pclose(pipe);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  return run;
}

TEST(GrafanaDashboard, PromtoolChecksExpressionsAndExposition) {
  const std::string promtool = find_tool("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool not installed (Debian package `prometheus`); PromQL not checked";
  const fs::path dir = fs::temp_directory_path() / ("troupe-promtool-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Grafana's variables are not PromQL: give them values first.
  std::ofstream rules(dir / "rules.yml");
  rules << "groups:\n- name: dashboard\n  rules:\n";
  int i = 0;
  for (std::string expr : dashboard_expressions(load_dashboard())) {
    if (expr.rfind("label_values", 0) == 0) continue;
    expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval)"), "5m");
    expr = std::regex_replace(expr, std::regex(R"(\$model_name)"), ".*");
    rules << "  - record: troupe_dashboard:expr" << i++ << "\n    expr: '" << expr << "'\n";
  }
  rules.close();
  EXPECT_EQ(std::system((promtool + " check rules " + (dir / "rules.yml").string()).c_str()), 0);
  TestServer server;
  std::ofstream(dir / "metrics.txt") << scrape_after_one_request(server);
  // Exit 1 is a parse error; 3 lists lint findings. vLLM's names (which troupe's copy) draw two:
  // a ':' in every name, and iteration_tokens_total, a histogram, ending in _total. Any other
  // finding fails.
  const CommandRun report = run_and_read(promtool + " check metrics < " + (dir / "metrics.txt").string() + " 2>&1");
  EXPECT_TRUE(report.exit_code == 0 || report.exit_code == 3) << report.exit_code << ": " << report.output;
  std::istringstream findings(report.output);
  for (std::string line; std::getline(findings, line);) {
    if (line.find("metric names should not contain ':'") != std::string::npos) continue;
    if (line == "troupe:iteration_tokens_total non-counter metrics should not have \"_total\" suffix") continue;
    ADD_FAILURE() << "promtool: " << line;
  }
  fs::remove_all(dir);
}



// A loopback port free now, for Prometheus' own web listener (bound to 0, read back, closed).
int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  return ok ? ntohs(addr.sin_port) : 0;
}


TEST(GrafanaDashboard, PrometheusScrapesALiveServerAndEveryPanelHasData) {
  const std::string prometheus = find_tool("prometheus");
  const std::string promtool = find_tool("promtool");
  if (prometheus.empty() || promtool.empty())
    GTEST_SKIP() << "Debian's prometheus package is not installed (tools/bootstrap installs it)";
  TestServer server;
  const fs::path dir = fs::temp_directory_path() / ("troupe-prometheus-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "prometheus.yml") << "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                                        << "scrape_configs:\n- job_name: troupe\n  static_configs:\n"
                                        << "  - targets: ['127.0.0.1:" << server.port() << "']\n";
  const int web_port = free_tcp_port();
  const std::string web = "127.0.0.1:" + std::to_string(web_port);
  // Everything the child needs is made before fork(): only async-signal-safe calls after it.
  const std::string log = (dir / "prometheus.log").string();
  const std::string config = "--config.file=" + (dir / "prometheus.yml").string();
  const std::string storage = "--storage.tsdb.path=" + (dir / "data").string();
  const std::string listen = "--web.listen-address=" + web;
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(prometheus.c_str(), "prometheus", config.c_str(), storage.c_str(), listen.c_str(), nullptr);
    ::_exit(127);
  }
  ASSERT_GT(pid, 0);
  // Requests keep flowing across several scrapes, so every rate() sees increases. Prometheus may
  // start slowly on a loaded machine: up to a minute for three scrapes.
  auto c = server.client();
  bool scraped = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int i = 1; !scraped && std::chrono::steady_clock::now() < deadline; ++i) {
    post_json(c, "/v1/chat/completions",
              json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 4}});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (i % 10 == 0)  // once a second: have three scrapes landed?
      scraped = run_and_read("timeout 10 " + promtool + " query instant -o json http://" + web +
                             " 'count_over_time(up[1m]) >= 3' 2>/dev/null")
                    .output.find("\"value\"") != std::string::npos;
  }
  // Two more scrapes with traffic between them, so rates over the last ones are not zero.
  for (int i = 0; i < 20; ++i) {
    post_json(c, "/v1/chat/completions",
              json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 4}});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(scraped) << "Prometheus did not scrape the server";
  int num_queried = 0;
  for (std::string expr : dashboard_expressions(load_dashboard())) {
    if (expr.rfind("label_values(", 0) == 0) expr = expr.substr(13, expr.find(',') - 13);  // its series
    expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval)"), "1m");
    expr = std::regex_replace(expr, std::regex(R"(\$model_name)"), ".*");
    const std::string out =
        run_and_read("timeout 10 " + promtool + " query instant -o json http://" + web + " '" + expr + "' 2>&1").output;
    EXPECT_NE(out.find("\"value\""), std::string::npos) << "no data for " << expr << ": " << out;
    ++num_queried;
  }
  EXPECT_GE(num_queried, 20);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace troupe::testing
