#pragma once
// The head's membership as JSON, for `troupe head` status files and queries:
//   {"head_epoch": 7, "num_active_nodes": 2,
//    "nodes": [{"node_id": 1, "host": "a", "pid": 10, "state": "active", "group_id": 0, ...}],
//    "groups": [{"group_id": 0, "epoch": 1, "state": "ready", "members": [1, 2], ...}]}
#include <cstdint>
#include <string>

#include "cluster/membership.hpp"
#include "runtime/result.hpp"

namespace troupe::cluster {

std::string membership_to_json(const Membership& membership, uint64_t head_epoch);

// Writes `text` to `path` through a temporary file and rename, so readers never see half a file.
Status write_file_atomically(const std::string& path, const std::string& text);

}  // namespace troupe::cluster
