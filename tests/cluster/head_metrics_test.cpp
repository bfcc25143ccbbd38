// `troupe head`'s /metrics: the groups' KV-cache usage, preemptions and tokens-per-step histogram
// come from their leaders' heartbeats (they read 0 before). A head with one worker and a KV cache
// too small for the requests sent at once: usage is seen above 0 while they run, preemptions are
// counted, and the engine steps that ran every token are in iteration_tokens_total.
#include <httplib.h>

#include <atomic>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

using nlohmann::json;

const std::string kToken = "head-metrics-token";
const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

TEST(HeadMetrics, KvUsageAndPreemptionsComeFromTheGroups) {
  Cluster cluster("head_metrics");
  const int http = free_port();
  // 12 blocks of 16 tokens for 8 requests of up to 150 tokens each: the scheduler must preempt.
  cluster.start_serving_head(kModel, 1, 1, http, kToken,
                             {"--num-threads", "1", "--num-kv-blocks", "12", "--max-num-seqs", "8"});
  cluster.start_worker("worker", kToken, true, {"--num-threads", "1"});
  ASSERT_TRUE(wait_until(
      [&] {
        httplib::Client client("127.0.0.1", http);
        client.set_connection_timeout(0, 200000);
        auto res = client.Get("/health");
        return res && res->status == 200;
      },
      milliseconds(30000)))
      << cluster.log("head");
  EXPECT_EQ(metric(http, "troupe:num_preemptions_total"), 0);
  EXPECT_EQ(metric(http, "troupe:iteration_tokens_total_count"), 0);

  // A burst lasts from about 0.1 s (an idle machine) to a second, so it may fall between two
  // heartbeats (200 ms here): bursts are repeated until a heartbeat has carried nonzero usage, at
  // most 20 (5 were too few on an idle 2-core machine: 2 runs in 8 saw no usage).
  std::atomic<int> num_ok{0};
  double max_usage = 0;
  for (int round = 0; round < 20 && max_usage == 0; ++round) {
    std::atomic<bool> done{false};
    std::vector<std::thread> clients;
    for (int i = 0; i < 8; ++i)
      clients.emplace_back([&, i] {
        httplib::Client client("127.0.0.1", http);
        client.set_read_timeout(60, 0);
        json body = {{"model", "llama-tiny"}, {"prompt", std::vector<int>{i + 1, 2 * i + 7, 3 * i + 11}},
                     {"max_tokens", 150}, {"temperature", 0}, {"ignore_eos", true}};
        auto res = client.Post("/v1/completions", body.dump(), "application/json");
        if (res && res->status == 200) ++num_ok;
      });
    std::thread watcher([&] {
      while (!done) {
        max_usage = std::max(max_usage, metric(http, "troupe:kv_cache_usage_perc"));
        std::this_thread::sleep_for(milliseconds(20));
      }
    });
    for (auto& t : clients) t.join();
    done = true;
    watcher.join();
    if (num_ok % 8 != 0) break;
  }
  EXPECT_TRUE(num_ok > 0 && num_ok % 8 == 0) << num_ok << " requests answered; head log:\n" << cluster.log("head");
  EXPECT_GT(max_usage, 0.0) << "KV usage never seen above 0 while requests ran";
  EXPECT_LE(max_usage, 1.0);
  // The last heartbeat after the burst carries the final count.
  double preemptions = 0;
  EXPECT_TRUE(wait_until([&] { return (preemptions = metric(http, "troupe:num_preemptions_total")) > 0; },
                         milliseconds(5000)))
      << "no preemption counted; head log:\n" << cluster.log("head");
  // Every answered request ran 3 prompt tokens and 149 decode steps of one token at least (a
  // preempted one runs more); each step counts once, so the sum is at least 152 per request.
  const double min_tokens = double(num_ok) * 152;
  double step_tokens = 0;
  EXPECT_TRUE(wait_until([&] { return (step_tokens = metric(http, "troupe:iteration_tokens_total_sum")) >= min_tokens; },
                         milliseconds(5000)))
      << step_tokens << " tokens in engine steps, expected at least " << min_tokens;
  const std::string body = scrape_metrics(http);
  const double steps = metric_in(body, "troupe:iteration_tokens_total_count");
  EXPECT_GT(steps, 0);
  EXPECT_LE(steps, metric_in(body, "troupe:iteration_tokens_total_sum")) << "a step has at least one token";
  EXPECT_NE(body.find("troupe:iteration_tokens_total_bucket{model_name=\"llama-tiny\",le=\"+Inf\"} " +
                      std::to_string(int64_t(steps)) + "\n"),
            std::string::npos)
      << "+Inf bucket is not the count:\n" << body;
  EXPECT_NE(body.find("troupe:cache_config_info{"), std::string::npos);
  EXPECT_EQ(body.find("num_gpu_blocks=\"0\""), std::string::npos) << "the groups' KV blocks are not counted";
  EXPECT_GT(metric_in(body, "troupe:request_queue_time_seconds_count"), 0);
}

}  // namespace
}  // namespace troupe::testing_cluster
