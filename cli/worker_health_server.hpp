#pragma once
// `troupe worker --health-port P`: the worker process's own HTTP endpoints, for its container's
// probes and a scrape (the head's /health and /metrics cover the cluster):
//   GET /live     200 while the node agent has a pulse (it reached or heard the head lately);
//                 503 once it has been silent for `stale_after` (a hung agent: restart me)
//   GET /health   200 while this worker's stage serves, 503 otherwise; both with the state JSON
//   GET /metrics  the state as Prometheus gauges (worker_state{state=...}, epoch, restarts)
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "cluster/worker_status.hpp"
#include "runtime/result.hpp"

namespace httplib {
class Server;
}

namespace troupe::cli {

class WorkerHealthServer {
 public:
  WorkerHealthServer(std::shared_ptr<const cluster::WorkerStatus> status, std::string metrics_prefix,
                     std::chrono::milliseconds stale_after);
  ~WorkerHealthServer();

  // Binds host:port (0: any free port) and serves on a thread.
  Status start(const std::string& host, int port);
  int port() const { return port_; }
  void stop();

 private:
  std::shared_ptr<const cluster::WorkerStatus> status_;
  std::string metrics_prefix_;
  std::chrono::milliseconds stale_after_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace troupe::cli
