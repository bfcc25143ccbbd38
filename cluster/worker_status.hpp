#pragma once
// What a worker process is doing, for its own health port (`troupe worker --health-port`): the
// node agent writes it as its state changes, an HTTP thread reads it.
//
//   connecting -> joined -> loading -> serving          (a stage of a group, at an epoch)
//        ^          ^          |  \-> failed (load or wire error: the head restarts the group)
//        |          +----------+  stop_group / declared lost
//        +--- head lost
//
// Liveness is the agent's own pulse: it touches the status at every connection attempt and every
// answered heartbeat, so a hung agent stops touching it.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace troupe::cluster {

struct WorkerSnapshot {
  std::string state = "connecting";  // connecting | joined | loading | serving | failed
  std::string reason;                // why `failed`, or the last loss
  uint64_t node_id = 0;
  uint64_t head_epoch = 0;
  int64_t group_id = -1;
  int64_t stage_index = -1;
  uint64_t epoch = 0;
  int64_t num_stage_starts = 0;  // stages started in this process
  int64_t num_head_losses = 0;
  std::chrono::steady_clock::time_point last_pulse = std::chrono::steady_clock::now();
};

class WorkerStatus {
 public:
  void connecting(const std::string& why = "");
  void joined(uint64_t node_id, uint64_t head_epoch);
  void loading(int64_t group_id, int64_t stage_index, uint64_t epoch);
  void serving(uint64_t epoch);
  void failed(uint64_t epoch, const std::string& why);
  void stage_stopped();
  void pulse();

  WorkerSnapshot snapshot() const;

 private:
  mutable std::mutex mutex_;
  WorkerSnapshot s_;
};

// /health's body: {"state": ..., "node_id": ..., "group_id": ..., ...}.
std::string worker_health_json(const WorkerSnapshot& s);
// /metrics: Prometheus text with `prefix` (troupe:) before each name.
std::string worker_metrics_text(const WorkerSnapshot& s, const std::string& prefix);

}  // namespace troupe::cluster
