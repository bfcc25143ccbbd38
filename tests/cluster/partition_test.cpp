// A worker partitioned from the head by the network (not killed, not stopped: its packets are
// dropped), with real namespaces and veth pairs (tests/cluster/network_lab.hpp). The head runs in
// the test's namespace on the lab's bridge; three workers run in three namespaces: one group of two
// stages plus a spare. Clients keep sending requests while one group member is cut off. Asserts:
//   - the head finds the partitioned worker within a bound (its heartbeat timeout plus slack);
//   - the group restarts at a new epoch on the survivor and the spare, their tensor channel
//     crossing the veth pairs (the workers advertise the address that routes to the head);
//   - every request finishes whole: none lost, none cut short;
//   - the drop rule holds: nothing from the cut namespace joins while it stands (4 s at least);
//   - once the partition heals, the old worker joins again as a new node (its old node id is
//     refused: the head declared it lost) and the serving group is not disturbed.
// Skips, saying why, where the machine forbids namespaces (not root, no `ip`, no veth support).
#include <httplib.h>

#include <atomic>
#include <cstdio>
#include <mutex>

#include "tests/cluster/cluster_harness.hpp"
#include "tests/cluster/network_lab.hpp"

namespace troupe::testing_cluster {
namespace {

using nlohmann::json;

const std::string kDemo = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/troupe-demo";
const std::string kToken = "partition-test-token";

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Active nodes of the status, as (node id, pid).
std::vector<std::pair<int64_t, pid_t>> active_nodes(const json& status) {
  std::vector<std::pair<int64_t, pid_t>> out;
  if (!status.is_object()) return out;
  for (const auto& node : status["nodes"])
    if (node["state"] == "active") out.emplace_back(node["node_id"].get<int64_t>(), node["pid"].get<pid_t>());
  return out;
}

bool node_active(const json& status, int64_t node_id) {
  for (const auto& [id, pid] : active_nodes(status))
    if (id == node_id) return true;
  return false;
}

// Clients that send whole chat completions one after another until stopped; each answer must be
// 200 with exactly `max_tokens` completion tokens (ignore_eos).
struct Clients {
  static constexpr int kMaxTokens = 24;
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, whole{0};
  std::mutex lock;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;

  void start(int port, int count) {
    for (int i = 0; i < count; ++i)
      threads.emplace_back([this, port, i] {
        httplib::Client client("127.0.0.1", port);
        client.set_read_timeout(60, 0);
        while (!stop.load()) {
          const json body = {{"model", "troupe-demo"},
                             {"messages", json::array({json{{"role", "user"}, {"content", "What is 12 + 30?"}}})},
                             {"max_tokens", kMaxTokens},
                             {"ignore_eos", true},
                             {"temperature", 0}};
          sent.fetch_add(1);
          auto res = client.Post("/v1/chat/completions", body.dump(), "application/json");
          const json answer = res ? json::parse(res->body, nullptr, false) : json();
          if (res && res->status == 200 && answer.is_object() &&
              answer["usage"]["completion_tokens"] == kMaxTokens) {
            whole.fetch_add(1);
            continue;
          }
          std::lock_guard<std::mutex> guard(lock);
          failures.push_back("client " + std::to_string(i) + ": " +
                             (res ? "HTTP " + std::to_string(res->status) + " " + res->body.substr(0, 200)
                                  : "no answer (" + httplib::to_string(res.error()) + ")"));
        }
      });
  }
  void join() {
    stop = true;
    for (auto& thread : threads) thread.join();
    threads.clear();
  }
  ~Clients() { join(); }  // on every path, a failed ASSERT included
};

TEST(Partition, AWorkerCutOffFromTheHeadIsFoundItsGroupRestartsOnTheSpareAndNoRequestIsLost) {
  NetworkLab lab(3);  // declared before the cluster: its processes die before the namespaces go
  if (!lab.unavailable_reason().empty()) {
    std::printf("[ partition ] skipped: %s\n", lab.unavailable_reason().c_str());
    GTEST_SKIP() << lab.unavailable_reason();
  }
  std::printf("[ partition ] bridge at %s, drop rule by %s\n", lab.head_address().c_str(), lab.firewall().c_str());
  Cluster cluster("partition");
  const int http = free_port();
  cluster.start_serving_head(kDemo, 2, 1, http, kToken, {"--num-threads", "1", "--num-kv-blocks", "512", "--served-model-name", "troupe-demo"});
  const std::string join = lab.head_address() + ":" + std::to_string(cluster.port());
  for (int i = 0; i < 3; ++i)
    cluster.start("worker_" + std::to_string(i), {"worker", "--join", join, "--num-threads", "1"}, kToken,
                  lab.exec_in(i));
  auto all_logs = [&] {
    return "head:\n" + cluster.log("head") + "\nworker_0:\n" + cluster.log("worker_0") + "\nworker_1:\n" +
           cluster.log("worker_1") + "\nworker_2:\n" + cluster.log("worker_2");
  };
  // Ready at any epoch (a group the supervisor restarted while starting is ready too); the cut
  // below must move the group past the epoch seen here.
  uint64_t start_epoch = 0;
  ASSERT_TRUE(wait_until([&] {
    const json s = cluster.status();
    start_epoch = group_ready_epoch(s, 0);
    return start_epoch > 0 && num_active(s) == 3;
  }, milliseconds(40000))) << cluster.status().dump() << "\n" << all_logs();
  ASSERT_TRUE(wait_healthy(http, milliseconds(10000))) << all_logs();
  // The group's stages advertise the lab's addresses, not a host name that resolves to loopback.
  for (int i = 0; i < 3; ++i) {
    const std::string log = cluster.log("worker_" + std::to_string(i));
    if (log.find("loaded layers") == std::string::npos) continue;  // the spare loads nothing
    EXPECT_NE(log.find("data at " + lab.address(i) + ":"), std::string::npos) << log;
  }

  // Stage 1 of group 0 is cut off while requests run.
  const json before = cluster.status();
  const json* victim = node_at(before, 0, 1);
  ASSERT_NE(victim, nullptr) << before.dump();
  const int64_t victim_id = (*victim)["node_id"].get<int64_t>();
  const int cut = lab.namespace_of((*victim)["pid"].get<pid_t>());
  ASSERT_GE(cut, 0) << "node " << victim_id << " runs in none of the lab's namespaces";
  Clients clients;
  clients.start(http, 4);
  ASSERT_TRUE(wait_until([&] { return metric(http, "troupe:num_requests_running") >= 1; }, milliseconds(20000)))
      << all_logs();
  const auto partitioned = Clock::now();
  const std::string cut_error = lab.partition(cut);
  ASSERT_EQ(cut_error, "");

  // Found: the heartbeat timeout is 1.5 s; 5 s allows for this machine's load.
  const bool found = wait_until([&] { return !node_active(cluster.status(), victim_id); }, milliseconds(10000));
  const double found_after = seconds_since(partitioned);
  EXPECT_TRUE(found) << cluster.status().dump();
  EXPECT_LT(found_after, 5.0);
  const bool restarted = wait_until([&] { return group_ready_since(cluster.status(), 0, start_epoch + 1); }, milliseconds(30000));
  const double restarted_after = seconds_since(partitioned);
  ASSERT_TRUE(restarted) << cluster.status().dump() << "\n" << all_logs();
  const json after = cluster.status();
  const uint64_t epoch = after["groups"][0]["epoch"].get<uint64_t>();
  for (int stage = 0; stage < 2; ++stage) {
    const json* node = node_at(after, 0, stage);
    ASSERT_NE(node, nullptr) << after.dump();
    EXPECT_NE((*node)["node_id"].get<int64_t>(), victim_id);
    EXPECT_NE(lab.namespace_of((*node)["pid"].get<pid_t>()), cut) << after.dump();
  }
  // Requests flow through the restarted group (its channel crosses the veth pairs).
  const int whole_at_restart = clients.whole.load();
  EXPECT_TRUE(wait_until([&] { return clients.whole.load() >= whole_at_restart + 4; }, milliseconds(30000)))
      << all_logs();

  // The drop rule holds: nothing from the cut namespace gets back in while it stands (at least 4 s).
  auto joined_from_cut = [&] {
    for (const auto& [id, pid] : active_nodes(cluster.status()))
      if (lab.namespace_of(pid) == cut) return true;
    return false;
  };
  const auto held = partitioned + milliseconds(4000);
  if (Clock::now() < held) std::this_thread::sleep_until(held);
  EXPECT_FALSE(joined_from_cut()) << "a node of the cut namespace is active during the partition: "
                                  << cluster.status().dump();

  // Healed: the old worker notices the head lost, joins again as a new node; the group stays put.
  const auto healed = Clock::now();  // before the command: packets may flow before it returns
  const std::string heal_error = lab.heal(cut);
  ASSERT_EQ(heal_error, "");
  const bool rejoined = wait_until(joined_from_cut, milliseconds(15000));
  const double rejoined_after = seconds_since(healed);
  EXPECT_TRUE(rejoined) << cluster.status().dump() << "\n" << cluster.log("worker_" + std::to_string(cut));
  clients.join();
  const json last = cluster.status();
  EXPECT_FALSE(node_active(last, victim_id)) << "the partitioned node's old id came back: " << last.dump();
  EXPECT_TRUE(group_is(last, 0, "ready", epoch)) << "the rejoin disturbed the serving group: " << last.dump();

  const double resumed = metric(http, "troupe:cluster_requests_resumed_total");
  std::printf(
      "[ partition ] node %lld cut off by %s: found after %.2f s, group ready at epoch %llu after %.2f s; "
      "healed: rejoined as a new node after %.2f s; %d requests sent, %d whole, %zu failed, %.0f resumed\n",
      static_cast<long long>(victim_id), lab.firewall().c_str(), found_after, static_cast<unsigned long long>(epoch),
      restarted_after, rejoined_after, clients.sent.load(), clients.whole.load(), clients.failures.size(), resumed);
  EXPECT_TRUE(clients.failures.empty()) << clients.failures.front() << "\n" << all_logs();
  EXPECT_EQ(clients.sent.load(), clients.whole.load());
  EXPECT_GT(resumed, 0) << "the partition hit no running request";
  EXPECT_NE(cluster.log("worker_" + std::to_string(cut)).find("head lost"), std::string::npos)
      << cluster.log("worker_" + std::to_string(cut));
}

}  // namespace
}  // namespace troupe::testing_cluster
