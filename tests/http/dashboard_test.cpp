// deploy/grafana-dashboard.json against what troupe exports: every metric name a panel (or the
// model variable) queries appears in a live server's /metrics; with promtool installed, the
// expressions parse as PromQL and the exposition passes `promtool check metrics`.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

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

std::string find_promtool() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    fs::path p = fs::path(dir) / "promtool";
    if (fs::exists(p)) return p.string();
  }
  return "";
}

TEST(GrafanaDashboard, PromtoolChecksExpressionsAndExposition) {
  const std::string promtool = find_promtool();
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
  EXPECT_EQ(std::system((promtool + " check metrics < " + (dir / "metrics.txt").string()).c_str()), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace troupe::testing
