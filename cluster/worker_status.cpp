#include "cluster/worker_status.hpp"

#include <nlohmann/json.hpp>

namespace troupe::cluster {

void WorkerStatus::connecting(const std::string& why) {
  std::lock_guard lock(mutex_);
  if (!why.empty()) {
    s_.reason = why;
    ++s_.num_head_losses;
  }
  s_.state = "connecting";
  s_.node_id = 0;
  s_.group_id = -1;
  s_.stage_index = -1;
  s_.epoch = 0;
  s_.last_pulse = std::chrono::steady_clock::now();
}

void WorkerStatus::joined(uint64_t node_id, uint64_t head_epoch) {
  std::lock_guard lock(mutex_);
  s_.state = "joined";
  s_.node_id = node_id;
  s_.head_epoch = head_epoch;
  s_.last_pulse = std::chrono::steady_clock::now();
}

void WorkerStatus::loading(int64_t group_id, int64_t stage_index, uint64_t epoch) {
  std::lock_guard lock(mutex_);
  s_.state = "loading";
  s_.group_id = group_id;
  s_.stage_index = stage_index;
  s_.epoch = epoch;
  ++s_.num_stage_starts;
}

void WorkerStatus::serving(uint64_t epoch) {
  std::lock_guard lock(mutex_);
  if (epoch != s_.epoch) return;  // stale
  s_.state = "serving";
  s_.reason.clear();
}

void WorkerStatus::failed(uint64_t epoch, const std::string& why) {
  std::lock_guard lock(mutex_);
  if (epoch != s_.epoch) return;
  s_.state = "failed";
  s_.reason = why;
}

void WorkerStatus::stage_stopped() {
  std::lock_guard lock(mutex_);
  if (s_.node_id == 0) return;
  if (s_.state != "failed") s_.state = "joined";
  s_.group_id = -1;
  s_.stage_index = -1;
}

void WorkerStatus::pulse() {
  std::lock_guard lock(mutex_);
  s_.last_pulse = std::chrono::steady_clock::now();
}

WorkerSnapshot WorkerStatus::snapshot() const {
  std::lock_guard lock(mutex_);
  return s_;
}

std::string worker_health_json(const WorkerSnapshot& s) {
  nlohmann::json j{{"state", s.state},
                   {"node_id", s.node_id},
                   {"head_epoch", s.head_epoch},
                   {"group_id", s.group_id},
                   {"stage_index", s.stage_index},
                   {"epoch", s.epoch},
                   {"stage_starts", s.num_stage_starts},
                   {"head_losses", s.num_head_losses}};
  if (!s.reason.empty()) j["reason"] = s.reason;
  return j.dump();
}

std::string worker_metrics_text(const WorkerSnapshot& s, const std::string& prefix) {
  std::string out;
  auto gauge = [&](const std::string& name, const std::string& help, const std::string& labels, double value,
                   const char* type = "gauge") {
    out += "# HELP " + prefix + name + " " + help + "\n# TYPE " + prefix + name + " " + type + "\n";
    out += prefix + name + labels + " " + std::to_string(value) + "\n";
  };
  out += "# HELP " + prefix + "worker_state 1 for the state this worker is in\n# TYPE " + prefix + "worker_state gauge\n";
  for (const char* state : {"connecting", "joined", "loading", "serving", "failed"})
    out += prefix + "worker_state{state=\"" + state + "\"} " + (s.state == state ? "1" : "0") + "\n";
  const std::string where = "{group_id=\"" + std::to_string(s.group_id) + "\",stage_index=\"" +
                            std::to_string(s.stage_index) + "\"}";
  gauge("worker_group_epoch", "epoch of the group stage this worker runs (0: none)", where, static_cast<double>(s.epoch));
  gauge("worker_stage_starts_total", "stages started by this worker process", "",
        static_cast<double>(s.num_stage_starts), "counter");
  gauge("worker_head_losses_total", "times this worker lost the head and reconnected", "",
        static_cast<double>(s.num_head_losses), "counter");
  const double age = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.last_pulse).count();
  gauge("worker_seconds_since_pulse", "seconds since the node agent last reached or heard the head", "", age);
  return out;
}

}  // namespace troupe::cluster
