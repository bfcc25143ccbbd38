// `troupe worker --gpu-memory-utilization`: a worker that gives its own sizes its stage's KV cache
// with it; one that does not uses the head's. Each stage logs the value it sized with and whose it
// is. A value outside (0, 1] stops the worker at once, naming the flag.
#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

const std::string kToken = "worker-memory-token";
const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

TEST(WorkerMemoryFlag, AWorkersOwnValueSizesItsStageElseTheHeads) {
  Cluster cluster("worker_memory_flag");
  const int http = free_port();
  cluster.start_serving_head(kModel, 2, 1, http, kToken, {"--num-threads", "1", "--gpu-memory-utilization", "0.5"});
  cluster.start_worker("own", kToken, true, {"--num-threads", "1", "--gpu-memory-utilization", "0.7"});
  cluster.start_worker("heads", kToken, true, {"--num-threads", "1"});
  const std::string loaded = "KV blocks fit";
  ASSERT_TRUE(wait_until(
      [&] {
        return cluster.log("own").find(loaded) != std::string::npos &&
               cluster.log("heads").find(loaded) != std::string::npos;
      },
      milliseconds(60000)))
      << "own:\n" << cluster.log("own") << "\nheads:\n" << cluster.log("heads") << "\nhead:\n" << cluster.log("head");
  EXPECT_NE(cluster.log("own").find("(--gpu-memory-utilization 0.7, this worker's)"), std::string::npos)
      << cluster.log("own");
  EXPECT_NE(cluster.log("heads").find("(--gpu-memory-utilization 0.5, the head's)"), std::string::npos)
      << cluster.log("heads");
}

TEST(WorkerMemoryFlag, AValueOutsideZeroToOneIsRefused) {
  Cluster cluster("worker_memory_flag_bad");
  const pid_t worker = cluster.start_worker("bad", kToken, true, {"--gpu-memory-utilization", "1.2"});
  EXPECT_EQ(Cluster::wait_exit(worker, milliseconds(10000)), 2);
  EXPECT_NE(cluster.log("bad").find("--gpu-memory-utilization: must be in (0, 1], a fraction of the GPU's memory, got 1.2"),
            std::string::npos)
      << cluster.log("bad");
}

}  // namespace
}  // namespace troupe::testing_cluster
