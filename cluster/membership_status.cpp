#include "cluster/membership_status.hpp"

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

namespace troupe::cluster {

std::string membership_to_json(const Membership& membership, uint64_t head_epoch) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& [id, node] : membership.nodes()) {
    nodes.push_back({{"node_id", id},
                     {"host", node.host},
                     {"pid", node.pid},
                     {"worker_index", node.worker_index},
                     {"state", to_string(node.state)},
                     {"group_id", node.group_id},
                     {"stage_index", node.stage_index},
                     {"num_gpus", node.resources.num_gpus},
                     {"memory_bytes", node.resources.memory_bytes},
                     {"cpu_cores", node.resources.cpu_cores}});
  }
  nlohmann::json groups = nlohmann::json::array();
  for (const GroupInfo& group : membership.groups()) {
    groups.push_back({{"group_id", group.group_id},
                      {"epoch", group.epoch},
                      {"state", to_string(group.state)},
                      {"members", group.members},
                      {"num_restarts", group.num_restarts},
                      {"last_error", group.last_error}});
  }
  nlohmann::json out = {{"head_epoch", head_epoch},
                        {"num_active_nodes", membership.num_active_nodes()},
                        {"nodes", nodes},
                        {"groups", groups}};
  return out.dump();
}

Status write_file_atomically(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    if (!file) return make_error(ErrorCode::not_found, "cannot write status file '" + temporary + "'");
    file << text << "\n";
    if (!file.flush()) return make_error(ErrorCode::internal, "cannot write status file '" + temporary + "'");
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0)
    return make_error(ErrorCode::internal, "cannot rename '" + temporary + "' to '" + path + "'");
  return Status::success();
}

}  // namespace troupe::cluster
