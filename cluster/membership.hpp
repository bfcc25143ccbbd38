#pragma once
// The head's registry of nodes and groups (no actors: the head actor holds one and forwards to it).
//
// Groups work like a LeaderWorkerSet: `num_groups` replicas of `group_size` (= pipeline stages)
// slots. A joining node takes the first free slot of the first group that is not failed.
//
//   forming --(all slots filled: epoch+1)--> loading --(every member loaded)--> ready
//      ^                                        |                                 |
//      |                                        +------(a member is lost)---------+
//      |                                        v
//      +----(lost slot filled: epoch+1)---- restarting --(over R restarts in T)--> failed
//
// one_for_all: losing one member restarts the whole group; the others keep their slots and are
// told to stop their work of the old epoch, then start again with the new one. Nodes that joined
// while every group was full wait as spares and take the first slot that frees up.
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::cluster {

using Clock = std::chrono::steady_clock;
using NodeId = uint64_t;  // head-assigned, never reused by one head: 1, 2, 3, ...

struct NodeResources {
  int64_t num_gpus = 0;
  int64_t memory_bytes = 0;
  int64_t cpu_cores = 0;
  std::string ucx_address;
};

enum class NodeState { active, lost };
enum class GroupState { forming, loading, ready, restarting, failed };
const char* to_string(NodeState state);
const char* to_string(GroupState state);

struct NodeInfo {
  NodeId node_id = 0;
  std::string host;
  int64_t pid = 0;
  int64_t worker_index = -1;
  NodeResources resources;
  Clock::time_point last_heartbeat;
  NodeState state = NodeState::active;
  int64_t group_id = -1;  // -1: no slot (all groups full or failed)
  int64_t stage_index = -1;
};

struct GroupInfo {
  int64_t group_id = 0;
  uint64_t epoch = 0;  // +1 on every (re)formation; 0 until first formed
  GroupState state = GroupState::forming;
  std::vector<NodeId> members;  // [group_size], 0 = free slot
  std::vector<bool> loaded;     // [group_size], members that finished loading this epoch
  std::deque<Clock::time_point> restart_times;
  int64_t num_restarts = 0;
  std::string last_error;  // why it last lost a member ("" until then); kept while it is ready again
  bool is_full() const;
};

// Like OTP's supervisor intensity: more than `max_restarts` restarts within `window` => failed.
struct RestartIntensity {
  int64_t max_restarts = 5;
  std::chrono::milliseconds window{60000};
};

struct JoinResult {
  NodeId node_id = 0;
  int64_t group_id = -1;
  int64_t stage_index = -1;
  bool group_formed = false;  // this join filled the group: a new epoch starts now
  uint64_t epoch = 0;         // the group's epoch after the join
};

struct LossResult {
  int64_t group_id = -1;         // -1: the node held no slot
  uint64_t old_epoch = 0;        // the epoch whose work must stop
  std::vector<NodeId> to_stop;   // the group's other members (one_for_all)
  GroupState new_state = GroupState::restarting;
  NodeId spare = 0;            // a waiting node that took the freed slot at once, or 0
  bool group_formed = false;   // the spare filled the group: a new epoch starts now
};

class Membership {
 public:
  Membership(int64_t num_groups, int64_t group_size, RestartIntensity intensity = {});

  // Registers a node and gives it a slot when one is free.
  JoinResult join(std::string host, int64_t pid, int64_t worker_index, NodeResources resources,
                  Clock::time_point now);
  // Records a heartbeat; not_found for unknown or lost nodes (they must join again).
  Status heartbeat(NodeId node_id, Clock::time_point now);
  // Active nodes whose last heartbeat is older than `timeout`.
  std::vector<NodeId> expired(Clock::time_point now, std::chrono::milliseconds timeout) const;
  // Marks a node lost, frees its slot and restarts its group (one_for_all); a waiting spare takes
  // the slot at once; `why` becomes the group's last_error. Unknown or already lost nodes give
  // not_found.
  Result<LossResult> mark_lost(NodeId node_id, Clock::time_point now, const std::string& why = "");
  // A member finished loading `epoch`; returns true when this made the group ready.
  Result<bool> mark_loaded(NodeId node_id, uint64_t epoch);

  const NodeInfo* node(NodeId node_id) const;
  const GroupInfo& group(int64_t group_id) const { return groups_.at(static_cast<size_t>(group_id)); }
  const std::map<NodeId, NodeInfo>& nodes() const { return nodes_; }
  const std::vector<GroupInfo>& groups() const { return groups_; }
  int64_t num_active_nodes() const;
  int64_t group_size() const { return group_size_; }

 private:
  void place(NodeInfo& node, JoinResult& result);

  int64_t group_size_;
  RestartIntensity intensity_;
  NodeId next_node_id_ = 1;
  std::map<NodeId, NodeInfo> nodes_;
  std::vector<GroupInfo> groups_;
};

}  // namespace troupe::cluster
