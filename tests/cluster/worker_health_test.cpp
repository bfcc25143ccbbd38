// `troupe worker --health-port`: the worker's own /live, /health and /metrics. Serving while its
// stage is wired; after the head dies, /health says `connecting` (503) with the loss counted,
// while /live stays 200 (the node agent keeps its pulse by retrying the head).
#include <httplib.h>
#include <signal.h>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

using nlohmann::json;

const std::string kToken = "worker-health-token";
const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

struct Reply {
  int status = -1;
  std::string body;
};

Reply get(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1, 0);
  client.set_read_timeout(5, 0);
  auto res = client.Get(path);
  return res ? Reply{res->status, res->body} : Reply{};
}

TEST(WorkerHealth, ServingThenConnectingAfterTheHeadDiesWhileLiveStays) {
  Cluster cluster("worker_health");
  const int http = free_port();
  const int health = free_port();
  cluster.start_serving_head(kModel, 1, 1, http, kToken, {"--num-threads", "1", "--num-kv-blocks", "64"});
  cluster.start_worker("worker", kToken, true, {"--num-threads", "1", "--health-port", std::to_string(health)});
  ASSERT_TRUE(wait_healthy(http, milliseconds(60000))) << cluster.log("head") << cluster.log("worker");
  ASSERT_TRUE(wait_until([&] { return get(health, "/health").status == 200; }, milliseconds(10000)))
      << cluster.log("worker");
  json state = json::parse(get(health, "/health").body);
  EXPECT_EQ(state["state"], "serving");
  EXPECT_EQ(state["group_id"], 0);
  EXPECT_EQ(state["stage_index"], 0);
  // >= 1: a stage restarted during start-up (the supervisor working) serves at a later epoch.
  EXPECT_GE(state["epoch"].get<int64_t>(), 1);
  EXPECT_EQ(get(health, "/live").status, 200);
  const std::string metrics = get(health, "/metrics").body;
  EXPECT_EQ(metric_in("\n" + metrics, "troupe:worker_state{state=\"serving\"}"), 1) << metrics;
  EXPECT_GE(metric_in("\n" + metrics, "troupe:worker_stage_starts_total"), 1) << metrics;

  ::kill(cluster.head_pid(), SIGKILL);
  ASSERT_TRUE(wait_until([&] { return get(health, "/health").status == 503; }, milliseconds(10000)))
      << cluster.log("worker");
  state = json::parse(get(health, "/health").body);
  EXPECT_EQ(state["state"], "connecting");
  EXPECT_EQ(state["head_losses"], 1);
  EXPECT_NE(state.value("reason", "").find("head lost"), std::string::npos) << state.dump();
  EXPECT_EQ(get(health, "/live").status, 200);
}

}  // namespace
}  // namespace troupe::testing_cluster
