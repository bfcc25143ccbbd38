// A worker partitioned from the head: it runs in its own network namespace, joined to the host's
// by a veth pair; the partition brings the pair's link down (no packet passes either way, no
// connection is reset). Needs root (ip netns); skips, saying why, where namespaces are forbidden.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

using nlohmann::json;

const std::string kDemo = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/troupe-demo";
const std::string kToken = "partition-test-token";

int sh(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

// A network namespace with a veth pair to the host: host_ip on the host's end, ns_ip inside.
class NetworkNamespace {
 public:
  NetworkNamespace() {
    const int id = int(::getpid() % 250) + 1;
    name_ = "troupe_part_" + std::to_string(::getpid());
    host_veth_ = "trph" + std::to_string(::getpid());
    ns_veth_ = "trpn" + std::to_string(::getpid());
    host_ip_ = "10.213." + std::to_string(id) + ".1";
    ns_ip_ = "10.213." + std::to_string(id) + ".2";
  }
  ~NetworkNamespace() {
    sh("ip link del " + host_veth_);
    sh("ip netns del " + name_);
  }
  // "" when it is up, else why not.
  std::string create() {
    if (::geteuid() != 0) return "not root (ip netns needs CAP_NET_ADMIN)";
    if (sh("ip netns add " + name_) != 0) return "`ip netns add` failed (namespaces forbidden here?)";
    const std::vector<std::string> steps = {
        "ip link add " + host_veth_ + " type veth peer name " + ns_veth_,
        "ip link set " + ns_veth_ + " netns " + name_,
        "ip addr add " + host_ip_ + "/24 dev " + host_veth_,
        "ip link set " + host_veth_ + " up",
        "ip netns exec " + name_ + " ip addr add " + ns_ip_ + "/24 dev " + ns_veth_,
        "ip netns exec " + name_ + " ip link set " + ns_veth_ + " up",
        "ip netns exec " + name_ + " ip link set lo up",
    };
    for (const auto& step : steps)
      if (sh(step) != 0) return "`" + step + "` failed";
    if (sh("ip netns exec " + name_ + " ping -c 1 -W 2 " + host_ip_) != 0 && sh("command -v ping") == 0)
      return "the namespace cannot reach " + host_ip_;
    return "";
  }
  bool cut() { return sh("ip link set " + host_veth_ + " down") == 0; }

  const std::string& name() const { return name_; }
  const std::string& host_ip() const { return host_ip_; }
  const std::string& ns_ip() const { return ns_ip_; }

 private:
  std::string name_, host_veth_, ns_veth_, host_ip_, ns_ip_;
};

struct Streamed {
  std::atomic<bool> begun{false};
  bool done = false;
  std::string error;
};

void stream(int port, Streamed& out) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/chat/completions";
  request.headers = {{"Content-Type", "application/json"}};
  request.body = json{{"model", "troupe-demo"},
                      {"messages", json::array({json{{"role", "user"}, {"content", "What is 12 + 30?"}}})},
                      {"max_tokens", 300},
                      {"ignore_eos", true},
                      {"temperature", 0},
                      {"stream", true}}
                     .dump();
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    const std::string text(data, size);
    if (text.find("data: {") != std::string::npos) out.begun = true;
    if (text.find("\"error\"") != std::string::npos) out.error = text;
    if (text.find("data: [DONE]") != std::string::npos) out.done = true;
    return true;
  };
  auto res = client.send(request);
  if (!res) out.error = "no response: " + httplib::to_string(res.error());
}

TEST(Partition, APartitionedWorkerIsFoundWithinTheHeartbeatTimeoutAndItsRequestsResume) {
  NetworkNamespace ns;
  if (const std::string why = ns.create(); !why.empty()) {
    std::printf("[ partition ] skipped: %s\n", why.c_str());
    GTEST_SKIP() << why;
  }
  Cluster cluster("partition");
  const int http = free_port();
  cluster.start_serving_head(kDemo, 2, 1, http, kToken,
                             {"--num-threads", "1", "--served-model-name", "troupe-demo"});
  // Stage 0 on the host, stage 1 in the namespace; a spare on the host waits to take a lost slot.
  // Each advertises the address the others reach it by (UCX tensors between the stages).
  const std::vector<std::pair<std::string, std::string>> on_host = {{"TROUPE_ADVERTISE_HOST", ns.host_ip()}};
  cluster.start("worker_a", {"worker", "--join", cluster.join(), "--num-threads", "1"}, kToken, {}, on_host);
  ASSERT_TRUE(wait_until([&] { return num_active(cluster.status()) == 1; }, milliseconds(30000))) << cluster.log("head");
  cluster.start("worker_b",
                {"worker", "--join", ns.host_ip() + ":" + std::to_string(cluster.port()), "--num-threads", "1"}, kToken,
                {"/usr/sbin/ip", "netns", "exec", ns.name()}, {{"TROUPE_ADVERTISE_HOST", ns.ns_ip()}});
  ASSERT_TRUE(wait_until([&] { return group_is(cluster.status(), 0, "ready", 1); }, milliseconds(60000)))
      << cluster.status().dump() << cluster.log("head") << cluster.log("worker_b");
  cluster.start("worker_c", {"worker", "--join", cluster.join(), "--num-threads", "1"}, kToken, {}, on_host);
  ASSERT_TRUE(wait_until([&] { return num_active(cluster.status()) == 3; }, milliseconds(30000))) << cluster.log("head");
  ASSERT_TRUE(wait_healthy(http, milliseconds(10000)));
  const json partitioned = *node_at(cluster.status(), 0, 1);

  std::vector<Streamed> streams(4);
  std::vector<std::thread> clients;
  for (auto& s : streams) clients.emplace_back([&] { stream(http, s); });
  const bool begun = wait_until(
      [&] { return std::all_of(streams.begin(), streams.end(), [](const Streamed& s) { return s.begun.load(); }); },
      milliseconds(30000));
  const auto cut = Clock::now();
  const bool is_cut = ns.cut();
  auto is_lost = [&] {
    for (const auto& node : cluster.status()["nodes"])
      if (node["node_id"] == partitioned["node_id"]) return node["state"] == "lost";
    return false;
  };
  const bool lost = wait_until(is_lost, milliseconds(10000));
  const double detected = std::chrono::duration<double>(Clock::now() - cut).count();
  for (auto& c : clients) c.join();
  ASSERT_TRUE(begun);
  ASSERT_TRUE(is_cut);
  ASSERT_TRUE(lost) << cluster.log("head");
  std::printf("[ partition ] node %d cut off: lost after %.2f s (heartbeat timeout 1.5 s)\n",
              partitioned["node_id"].get<int>(), detected);
  EXPECT_LT(detected, 1.5 + 1.5) << "found later than the heartbeat timeout and a tick";
  EXPECT_TRUE(group_ready_since(cluster.status(), 0, 2)) << cluster.status().dump();
  for (const Streamed& s : streams) {
    EXPECT_TRUE(s.done) << s.error << cluster.log("head");
    EXPECT_TRUE(s.error.empty()) << s.error;
  }
  EXPECT_GT(metric(http, "troupe:cluster_requests_resumed_total"), 0);
}

}  // namespace
}  // namespace troupe::testing_cluster
