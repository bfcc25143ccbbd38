// Real processes on loopback: joins, refused tokens, late heads, crashed and hung workers.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

const std::string kToken = "t0ps3cret-cluster-token";

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST(ClusterMembership, TwoWorkersJoinAndTheirGroupBecomesReady) {
  Cluster cluster("join");
  cluster.start_head(2, 1, kToken);
  cluster.start_worker("worker_a", kToken);
  cluster.start_worker("worker_b", kToken);
  // Ready at any epoch: a group the supervisor restarted while starting is ready too.
  ASSERT_TRUE(wait_until([&] { return group_ready_epoch(cluster.status(), 0) > 0; }, milliseconds(12000)))
      << cluster.status().dump() << "\nhead log:\n" << cluster.log("head");
  nlohmann::json status = cluster.status();
  EXPECT_EQ(num_active(status), 2);
  ASSERT_NE(node_at(status, 0, 0), nullptr);
  ASSERT_NE(node_at(status, 0, 1), nullptr);
  EXPECT_NE((*node_at(status, 0, 0))["node_id"], (*node_at(status, 0, 1))["node_id"]);
  for (const char* worker : {"worker_a", "worker_b"}) {
    EXPECT_NE(cluster.log(worker).find("joined as node"), std::string::npos) << cluster.log(worker);
    EXPECT_NE(cluster.log(worker).find("starting stage"), std::string::npos) << cluster.log(worker);
  }
}

TEST(ClusterMembership, AWrongTokenIsRefusedAndNotLogged) {
  Cluster cluster("token");
  cluster.start_head(1, 1, kToken);
  const std::string wrong = "wr0ng-guess-of-the-token";
  const pid_t worker = cluster.start_worker("worker", wrong, /*supervise=*/false);
  const int code = Cluster::wait_exit(worker, milliseconds(12000));
  EXPECT_EQ(code, 2) << cluster.log("worker");
  EXPECT_NE(cluster.log("worker").find("refused"), std::string::npos) << cluster.log("worker");
  const std::string head_log = cluster.log("head");
  EXPECT_NE(head_log.find("wrong join token"), std::string::npos) << head_log;
  EXPECT_EQ(head_log.find(wrong), std::string::npos) << "the given token leaked into the log";
  EXPECT_EQ(head_log.find(kToken), std::string::npos) << "the real token leaked into the log";
  EXPECT_EQ(num_active(cluster.status()), 0);
}

TEST(ClusterMembership, AWorkerStartedBeforeTheHeadJoinsWhenTheHeadAppears) {
  Cluster cluster("late_head");
  cluster.start_worker("worker", kToken);
  std::this_thread::sleep_for(milliseconds(1500));
  const auto head_started = Clock::now();
  cluster.start_head(1, 1, kToken);
  ASSERT_TRUE(wait_until([&] { return group_ready_epoch(cluster.status(), 0) > 0; }, milliseconds(12000)))
      << cluster.status().dump() << "\nworker log:\n" << cluster.log("worker");
  std::printf("[ cluster ] worker joined %.2f s after the head started\n", seconds_since(head_started));
  EXPECT_NE(cluster.log("worker").find("not reachable yet"), std::string::npos) << cluster.log("worker");
}

// Starts a head with one group of two stages and two supervised workers; returns once ready, at
// any epoch (a group the supervisor restarted while starting is ready too), with the status that
// showed it ready in `ready`: its epoch and restart count are what a later loss must move past.
void start_ready_pair(Cluster& cluster, nlohmann::json* ready = nullptr) {
  cluster.start_head(2, 1, kToken);
  cluster.start_worker("worker_a", kToken);
  cluster.start_worker("worker_b", kToken);
  nlohmann::json seen;
  ASSERT_TRUE(wait_until([&] {
    seen = cluster.status();
    return group_ready_epoch(seen, 0) > 0;
  }, milliseconds(12000))) << cluster.status().dump() << "\nhead log:\n" << cluster.log("head");
  if (ready != nullptr) *ready = seen;
}

TEST(ClusterMembership, AKilledWorkerIsDetectedAndItsGroupRestartsWithANewEpoch) {
  Cluster cluster("kill");
  nlohmann::json ready;
  ASSERT_NO_FATAL_FAILURE(start_ready_pair(cluster, &ready));
  const uint64_t epoch = ready["groups"][0]["epoch"].get<uint64_t>();
  const uint64_t restarts = ready["groups"][0]["num_restarts"].get<uint64_t>();
  const nlohmann::json victim = *node_at(cluster.status(), 0, 1);
  const auto killed = Clock::now();
  ASSERT_EQ(::kill(victim["pid"].get<pid_t>(), SIGKILL), 0);
  auto is_lost = [&] {
    nlohmann::json s = cluster.status();
    for (const auto& node : s["nodes"])
      if (node["node_id"] == victim["node_id"]) return node["state"] == "lost";
    return false;
  };
  ASSERT_TRUE(wait_until(is_lost, milliseconds(5000))) << cluster.log("head");
  const double detected = seconds_since(killed);
  std::printf("[ cluster ] kill -9 of node %d detected after %.3f s\n", victim["node_id"].get<int>(), detected);
  EXPECT_LT(detected, 3.0) << "a dead process closes its connection: detection should be fast";
  // The supervisor restarts the worker process; it joins again and the group forms the next epoch.
  ASSERT_TRUE(wait_until([&] { return group_is(cluster.status(), 0, "ready", epoch + 1); }, milliseconds(12000)))
      << cluster.status().dump() << "\nhead log:\n" << cluster.log("head");
  nlohmann::json status = cluster.status();
  EXPECT_EQ(num_active(status), 2);
  EXPECT_NE((*node_at(status, 0, 1))["pid"], victim["pid"]) << "a new process took the slot";
  EXPECT_GT((*node_at(status, 0, 1))["node_id"].get<int>(), victim["node_id"].get<int>());
  EXPECT_EQ(status["groups"][0]["num_restarts"], restarts + 1);
  const std::string survivor = cluster.log("worker_a") + cluster.log("worker_b");
  EXPECT_NE(survivor.find("epoch " + std::to_string(epoch) + ": node " + std::to_string(victim["node_id"].get<int>()) +
                          " lost"),
            std::string::npos)
      << "the other member was told to stop epoch " << epoch << "\n" << survivor;
  EXPECT_NE(survivor.find("crashed (signal 9)"), std::string::npos) << survivor;
}

TEST(ClusterMembership, AStoppedWorkerIsDetectedByHeartbeatTimeoutAndRejoinsWhenResumed) {
  Cluster cluster("stop");
  nlohmann::json ready;
  ASSERT_NO_FATAL_FAILURE(start_ready_pair(cluster, &ready));
  const uint64_t epoch = ready["groups"][0]["epoch"].get<uint64_t>();
  const nlohmann::json victim = *node_at(cluster.status(), 0, 0);
  const pid_t pid = victim["pid"].get<pid_t>();
  const auto stopped = Clock::now();
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  auto is_lost = [&] {
    nlohmann::json s = cluster.status();
    for (const auto& node : s["nodes"])
      if (node["node_id"] == victim["node_id"]) return node["state"] == "lost";
    return false;
  };
  const bool lost = wait_until(is_lost, milliseconds(8000));
  const double detected = seconds_since(stopped);
  ::kill(pid, SIGCONT);
  ASSERT_TRUE(lost) << cluster.log("head");
  std::printf("[ cluster ] SIGSTOP of node %d detected after %.3f s (timeout 1.5 s)\n", victim["node_id"].get<int>(),
              detected);
  EXPECT_GE(detected, 1.0) << "a hung process is only noticed by the heartbeat timeout";
  EXPECT_EQ(group_is(cluster.status(), 0, "ready", epoch), false);
  // Resumed, the same process learns it was declared lost and joins again: the next epoch.
  ASSERT_TRUE(wait_until([&] { return group_is(cluster.status(), 0, "ready", epoch + 1); }, milliseconds(12000)))
      << cluster.status().dump() << "\nhead log:\n" << cluster.log("head");
  EXPECT_EQ((*node_at(cluster.status(), 0, 0))["pid"], pid) << "the resumed process itself rejoined";
}

TEST(ClusterMembership, WorkersRejoinAHeadThatRestartedOnTheSameAddress) {
  Cluster cluster("head_restart");
  ASSERT_NO_FATAL_FAILURE(start_ready_pair(cluster));
  const uint64_t first_epoch = cluster.status()["head_epoch"].get<uint64_t>();
  ASSERT_EQ(::kill(cluster.head_pid(), SIGKILL), 0);
  ASSERT_EQ(Cluster::wait_exit(cluster.head_pid(), milliseconds(5000)), 128 + SIGKILL);
  std::remove(cluster.status_path().c_str());
  std::this_thread::sleep_for(milliseconds(500));
  const auto restarted = Clock::now();
  cluster.start_head(2, 1, kToken);
  // The new head's group, ready at any epoch, with both workers back.
  ASSERT_TRUE(wait_until([&] {
    const nlohmann::json s = cluster.status();
    return group_ready_epoch(s, 0) > 0 && num_active(s) == 2;
  }, milliseconds(12000)))
      << cluster.status().dump() << "\nworker log:\n" << cluster.log("worker_a");
  std::printf("[ cluster ] both workers rejoined %.2f s after the head restarted\n", seconds_since(restarted));
  EXPECT_NE(cluster.status()["head_epoch"].get<uint64_t>(), first_epoch);
  EXPECT_NE(cluster.log("worker_a").find("head lost"), std::string::npos) << cluster.log("worker_a");
}

TEST(ClusterMembership, SigtermStopsASupervisedWorkerAndTheHeadCleanly) {
  Cluster cluster("sigterm");
  const pid_t head = cluster.start_head(1, 1, kToken);
  const pid_t worker = cluster.start_worker("worker", kToken);
  ASSERT_TRUE(wait_until([&] { return group_ready_epoch(cluster.status(), 0) > 0; }, milliseconds(12000)))
      << cluster.status().dump() << "\nworker log:\n" << cluster.log("worker");
  const pid_t child = (*node_at(cluster.status(), 0, 0))["pid"].get<pid_t>();
  ASSERT_NE(child, worker) << "a supervised worker runs its node in a child process";
  // The supervisor forwards SIGTERM; the child leaves, the supervisor does not restart it.
  ASSERT_EQ(::kill(worker, SIGTERM), 0);
  EXPECT_EQ(Cluster::wait_exit(worker, milliseconds(8000)), 0) << cluster.log("worker");
  EXPECT_NE(::kill(child, 0), 0) << "the node process outlived its supervisor";
  EXPECT_EQ(cluster.log("worker").find("restarting in"), std::string::npos) << cluster.log("worker");
  EXPECT_TRUE(wait_until([&] { return num_active(cluster.status()) == 0; }, milliseconds(5000)))
      << cluster.log("head");
  ASSERT_EQ(::kill(head, SIGTERM), 0);
  EXPECT_EQ(Cluster::wait_exit(head, milliseconds(8000)), 0) << cluster.log("head");
}

}  // namespace
}  // namespace troupe::testing_cluster
