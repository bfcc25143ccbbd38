// The request log's text and JSON lines, the API-key id, several API keys, and the metrics'
// names, bucket labels and finish reasons, without a server.
#include <regex>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/auth.hpp"
#include "http/metrics.hpp"
#include "http/request_log.hpp"
#include "runtime/config.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;

RequestRecord sample_record() {
  RequestRecord r;
  r.started_at = std::chrono::system_clock::time_point(std::chrono::milliseconds(1764687330123));
  r.request_id = "req-1";
  r.client = "127.0.0.1:5555";
  r.key_id = api_key_id("sk-secret");
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.model = "tiny";
  r.num_prompt_tokens = 12;
  r.num_completion_tokens = 5;
  r.ttft_ms = 3.25;
  r.duration_ms = 10.04;
  r.finish_reason = "length";
  r.status = 200;
  r.prompt = "the secret prompt";
  r.output = "the output";
  return r;
}

TEST(RequestLog, TextLineHasEveryFieldAndNoContent) {
  RequestLog log(RequestLog::Format::text, /*include_content=*/false);
  std::string line = log.format(sample_record());
  EXPECT_EQ(line, "request_id=req-1 client=127.0.0.1:5555 key_id=" + api_key_id("sk-secret") +
                      " method=POST path=/v1/chat/completions model=tiny prompt_tokens=12 completion_tokens=5"
                      " ttft_ms=3.2 duration_ms=10.0 finish_reason=length status=200");
  EXPECT_EQ(line.find("secret"), std::string::npos);
}

TEST(RequestLog, TextLineWithContentAndMissingValues) {
  RequestLog log(RequestLog::Format::text, /*include_content=*/true);
  RequestRecord r = sample_record();
  r.key_id.clear();
  r.ttft_ms = -1;
  r.finish_reason.clear();
  r.model.clear();
  std::string line = log.format(r);
  EXPECT_NE(line.find(" key_id=- "), std::string::npos) << line;
  EXPECT_NE(line.find(" model=- "), std::string::npos) << line;
  EXPECT_NE(line.find(" ttft_ms=- "), std::string::npos) << line;
  EXPECT_NE(line.find(" finish_reason=- "), std::string::npos) << line;
  EXPECT_NE(line.find(" prompt=\"the secret prompt\" output=\"the output\""), std::string::npos) << line;
}

TEST(RequestLog, TextQuotesHostileValuesOnOneLine) {
  RequestLog log(RequestLog::Format::text, true);
  RequestRecord r = sample_record();
  r.model = "x status=500\nforged=1 \"q\"";
  r.output = "two\nlines";
  std::string line = log.format(r);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_NE(line.find(R"( model="x status=500\nforged=1 \"q\"" )"), std::string::npos) << line;
  EXPECT_NE(line.find(R"(output="two\nlines")"), std::string::npos) << line;
}

TEST(RequestLog, JsonLineParsesWithEveryField) {
  for (bool content : {false, true}) {
    RequestLog log(RequestLog::Format::json, content);
    std::string line = log.format(sample_record());
    EXPECT_EQ(line.find('\n'), std::string::npos);
    json j = json::parse(line);
    EXPECT_EQ(j["time"], "2025-12-02T14:55:30.123Z");
    EXPECT_EQ(j["request_id"], "req-1");
    EXPECT_EQ(j["client"], "127.0.0.1:5555");
    EXPECT_EQ(j["key_id"], api_key_id("sk-secret"));
    EXPECT_EQ(j["model"], "tiny");
    EXPECT_EQ(j["prompt_tokens"], 12);
    EXPECT_EQ(j["completion_tokens"], 5);
    EXPECT_DOUBLE_EQ(j["ttft_ms"].get<double>(), 3.2);
    EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 10.0);
    EXPECT_EQ(j["finish_reason"], "length");
    EXPECT_EQ(j["status"], 200);
    EXPECT_EQ(j.contains("prompt"), content);
    EXPECT_EQ(j.contains("output"), content);
    if (content) {
      EXPECT_EQ(j["output"], "the output");
    }
  }
  RequestRecord r = sample_record();
  r.ttft_ms = -1;
  r.finish_reason.clear();
  r.key_id.clear();
  json j = json::parse(RequestLog(RequestLog::Format::json, false).format(r));
  EXPECT_TRUE(j["ttft_ms"].is_null());
  EXPECT_TRUE(j["finish_reason"].is_null());
  EXPECT_TRUE(j["key_id"].is_null());
}

TEST(RequestLog, ApiKeyIdIsTruncatedSha256) {
  EXPECT_EQ(api_key_id("abc"), "ba7816bf");  // SHA-256("abc") = ba7816bf 8f01cfea ...
  EXPECT_EQ(api_key_id(""), "e3b0c442");
  EXPECT_NE(api_key_id("k1"), api_key_id("k2"));
}

TEST(RequestLog, RequestIdMustBeShortPrintableAscii) {
  EXPECT_TRUE(is_acceptable_request_id("abc-123_x.y"));
  EXPECT_FALSE(is_acceptable_request_id(""));
  EXPECT_FALSE(is_acceptable_request_id("has space"));
  EXPECT_FALSE(is_acceptable_request_id("new\nline"));
  EXPECT_FALSE(is_acceptable_request_id(std::string(129, 'a')));
  EXPECT_TRUE(is_acceptable_request_id(std::string(128, 'a')));
}

TEST(ApiKeys, AnyOfSeveralKeysAuthorizes) {
  EXPECT_EQ(split_api_keys("k1,k2"), (std::vector<std::string>{"k1", "k2"}));
  EXPECT_TRUE(split_api_keys("").empty());
  EXPECT_TRUE(is_authorized("Bearer k1", "k1,k2"));
  EXPECT_TRUE(is_authorized("Bearer k2", "k1,k2"));
  EXPECT_TRUE(is_authorized("bearer k2", "k1,k2"));
  EXPECT_FALSE(is_authorized("Bearer k3", "k1,k2"));
  EXPECT_FALSE(is_authorized("Bearer k1,k2", "k1,k2"));
  EXPECT_FALSE(is_authorized("Bearer ", "k1,k2"));
  EXPECT_FALSE(is_authorized("Bearer ", ","));
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
}

TEST(ObservabilityConfig, ValidateNamesTheBadFlag) {
  Config config;
  EXPECT_TRUE(config.validate().ok());
  config.api_key = "k1,,k2";
  EXPECT_NE(config.validate().error().message.find("--api-key"), std::string::npos);
  config.api_key = "k1,k2";
  EXPECT_TRUE(config.validate().ok());
  config.metrics_prefix = "9bad-";
  EXPECT_NE(config.validate().error().message.find("--metrics-prefix"), std::string::npos);
  config.metrics_prefix = "";
  EXPECT_TRUE(config.validate().ok());
  config.metrics_prefix = "vllm:";
  config.log_format = "xml";
  EXPECT_NE(config.validate().error().message.find("--log-format"), std::string::npos);
  config.log_format = "json";
  EXPECT_TRUE(config.validate().ok());
}

TEST(MetricsText, BucketBoundsAreShortestRoundTrip) {
  Histogram h({0.001, 0.1, 0.3, 1.0, 2.5, 7680.0});
  h.observe(0.2);
  std::string out;
  h.render(out, "m", "a=\"b\"");
  for (const char* le : {"le=\"0.001\"", "le=\"0.1\"", "le=\"0.3\"", "le=\"1\"", "le=\"2.5\"", "le=\"7680\"", "le=\"+Inf\""})
    EXPECT_NE(out.find(le), std::string::npos) << le << "\n" << out;
  EXPECT_EQ(out.find("00000"), std::string::npos) << out;
  EXPECT_NE(out.find("m_sum{a=\"b\"} 0.2\n"), std::string::npos) << out;
  // Every default histogram of Metrics too.
  std::string all = Metrics().render(EngineStats{}, "tiny");
  EXPECT_EQ(all.find("000000"), std::string::npos) << all;
  EXPECT_NE(all.find("le=\"0.005\""), std::string::npos);
}

TEST(MetricsText, FinishedReasonsAsVllmNamesThem) {
  Metrics m;
  m.count_finished(FinishReason::stop);
  m.count_finished(FinishReason::stop);
  m.count_finished(FinishReason::length);
  m.count_finished(FinishReason::abort);
  m.count_finished(FinishReason::error);
  m.count_finished(FinishReason::none);  // ignored: still running
  std::string out = m.render(EngineStats{}, "tiny");
  const std::string name = "troupe:request_success_total{model_name=\"tiny\",finished_reason=";
  EXPECT_NE(out.find(name + "\"stop\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find(name + "\"length\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find(name + "\"abort\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find(name + "\"error\"} 1\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("finished_reason=\"ok\""), std::string::npos) << out;
}

TEST(MetricsText, PrefixRenamesEveryMetric) {
  EngineStats stats;
  stats.cluster.enabled = true;
  stats.cluster.groups.push_back({});
  for (const std::string prefix : {"vllm:", "", "my_app_"}) {
    std::string out = Metrics(prefix).render(stats, "tiny");
    EXPECT_EQ(out.find("troupe:"), std::string::npos) << out;
    std::istringstream lines(out);
    std::string line;
    int num_lines = 0;
    while (std::getline(lines, line)) {
      ++num_lines;
      std::string name = line.rfind("# ", 0) == 0 ? line.substr(7) : line;
      EXPECT_EQ(name.rfind(prefix, 0), 0u) << line;
    }
    EXPECT_GT(num_lines, 30);
    EXPECT_NE(out.find(prefix + "request_success_total{"), std::string::npos);
  }
  EXPECT_NE(Metrics().render(stats, "tiny").find("\ntroupe:num_requests_running{"), std::string::npos);
}

}  // namespace
}  // namespace troupe::http
