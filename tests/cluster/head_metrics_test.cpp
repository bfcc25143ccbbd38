// `troupe head`'s /metrics: the groups' KV-cache usage and preemptions come from their leaders'
// heartbeats (they read 0 before). A head with one worker and a KV cache too small for the
// requests sent at once: usage is seen above 0 while they run, and preemptions are counted.
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

  // A burst lasts about a second on an idle machine, a few heartbeats (200 ms here): bursts are
  // repeated until a heartbeat has carried nonzero usage, at most 5.
  std::atomic<int> num_ok{0};
  double max_usage = 0;
  for (int round = 0; round < 5 && max_usage == 0; ++round) {
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
  const std::string body = scrape_metrics(http);
  EXPECT_NE(body.find("troupe:cache_config_info{"), std::string::npos);
  EXPECT_EQ(body.find("num_gpu_blocks=\"0\""), std::string::npos) << "the groups' KV blocks are not counted";
  EXPECT_GT(metric_in(body, "troupe:request_queue_time_seconds_count"), 0);
}

}  // namespace
}  // namespace troupe::testing_cluster
