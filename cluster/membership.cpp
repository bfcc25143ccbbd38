#include "cluster/membership.hpp"

#include <algorithm>

namespace troupe::cluster {

const char* to_string(NodeState state) {
  return state == NodeState::active ? "active" : "lost";
}

const char* to_string(GroupState state) {
  switch (state) {
    case GroupState::forming: return "forming";
    case GroupState::loading: return "loading";
    case GroupState::ready: return "ready";
    case GroupState::restarting: return "restarting";
    case GroupState::failed: return "failed";
  }
  return "unknown";
}

bool GroupInfo::is_full() const {
  return std::none_of(members.begin(), members.end(), [](NodeId id) { return id == 0; });
}

Membership::Membership(int64_t num_groups, int64_t group_size, RestartIntensity intensity)
    : group_size_(std::max<int64_t>(group_size, 1)), intensity_(intensity) {
  for (int64_t g = 0; g < std::max<int64_t>(num_groups, 1); ++g) {
    GroupInfo group;
    group.group_id = g;
    group.members.assign(static_cast<size_t>(group_size_), 0);
    group.loaded.assign(static_cast<size_t>(group_size_), false);
    groups_.push_back(std::move(group));
  }
}

JoinResult Membership::join(std::string host, int64_t pid, int64_t worker_index,
                            NodeResources resources, Clock::time_point now) {
  NodeInfo node;
  node.node_id = next_node_id_++;
  node.host = std::move(host);
  node.pid = pid;
  node.worker_index = worker_index;
  node.resources = std::move(resources);
  node.last_heartbeat = now;
  JoinResult result;
  result.node_id = node.node_id;
  place(node, result);
  nodes_.emplace(node.node_id, std::move(node));
  return result;
}

void Membership::place(NodeInfo& node, JoinResult& result) {
  for (GroupInfo& group : groups_) {
    if (group.state == GroupState::failed) continue;
    auto slot = std::find(group.members.begin(), group.members.end(), NodeId{0});
    if (slot == group.members.end()) continue;
    *slot = node.node_id;
    node.group_id = group.group_id;
    node.stage_index = slot - group.members.begin();
    if (group.is_full()) {
      ++group.epoch;
      group.state = GroupState::loading;
      std::fill(group.loaded.begin(), group.loaded.end(), false);
      result.group_formed = true;
    }
    result.group_id = node.group_id;
    result.stage_index = node.stage_index;
    result.epoch = group.epoch;
    return;
  }
}

Status Membership::heartbeat(NodeId node_id, Clock::time_point now) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.state != NodeState::active)
    return make_error(ErrorCode::not_found, "node " + std::to_string(node_id) + " is not an active member");
  it->second.last_heartbeat = std::max(it->second.last_heartbeat, now);
  return Status::success();
}

std::vector<NodeId> Membership::expired(Clock::time_point now, std::chrono::milliseconds timeout) const {
  std::vector<NodeId> ids;
  for (const auto& [id, node] : nodes_)
    if (node.state == NodeState::active && now - node.last_heartbeat > timeout) ids.push_back(id);
  return ids;
}

Result<LossResult> Membership::mark_lost(NodeId node_id, Clock::time_point now, const std::string& why) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.state != NodeState::active)
    return make_error(ErrorCode::not_found, "node " + std::to_string(node_id) + " is not an active member");
  NodeInfo& node = it->second;
  node.state = NodeState::lost;
  LossResult result;
  if (node.group_id < 0) return result;
  GroupInfo& group = groups_[static_cast<size_t>(node.group_id)];
  result.group_id = group.group_id;
  result.old_epoch = group.epoch;
  group.last_error = "node " + std::to_string(node_id) + " lost" + (why.empty() ? "" : " (" + why + ")");
  group.members[static_cast<size_t>(node.stage_index)] = 0;
  std::fill(group.loaded.begin(), group.loaded.end(), false);
  for (NodeId other : group.members)
    if (other != 0) result.to_stop.push_back(other);
  node.group_id = -1;
  node.stage_index = -1;
  // A group that never formed loses nothing that needs a restart; it just has a free slot again.
  if (group.state != GroupState::forming && group.state != GroupState::failed) {
    group.restart_times.push_back(now);
    while (!group.restart_times.empty() && now - group.restart_times.front() > intensity_.window)
      group.restart_times.pop_front();
    ++group.num_restarts;
    group.state = static_cast<int64_t>(group.restart_times.size()) > intensity_.max_restarts
                      ? GroupState::failed
                      : GroupState::restarting;
  }
  result.new_state = group.state;
  if (group.state == GroupState::failed) return result;
  for (auto& [id, spare] : nodes_) {
    if (spare.state != NodeState::active || spare.group_id >= 0) continue;
    JoinResult placed;
    place(spare, placed);
    result.spare = id;
    result.group_formed = placed.group_formed;
    result.new_state = group.state;
    break;
  }
  return result;
}

Result<bool> Membership::mark_loaded(NodeId node_id, uint64_t epoch) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.state != NodeState::active || it->second.group_id < 0)
    return make_error(ErrorCode::not_found, "node " + std::to_string(node_id) + " holds no slot");
  GroupInfo& group = groups_[static_cast<size_t>(it->second.group_id)];
  if (group.epoch != epoch || group.state != GroupState::loading) return false;  // stale report
  group.loaded[static_cast<size_t>(it->second.stage_index)] = true;
  if (!std::all_of(group.loaded.begin(), group.loaded.end(), [](bool b) { return b; })) return false;
  group.state = GroupState::ready;
  return true;
}

const NodeInfo* Membership::node(NodeId node_id) const {
  auto it = nodes_.find(node_id);
  return it == nodes_.end() ? nullptr : &it->second;
}

int64_t Membership::num_active_nodes() const {
  return std::count_if(nodes_.begin(), nodes_.end(),
                       [](const auto& entry) { return entry.second.state == NodeState::active; });
}

}  // namespace troupe::cluster
