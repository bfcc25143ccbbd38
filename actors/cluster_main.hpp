#pragma once
// `troupe head` and `troupe worker` as plain functions (no CAF in this header). Each returns the
// process exit code and prints its own errors.
//
// Tuning by environment (tests use short values):
//   TROUPE_HEARTBEAT_MS          heartbeat interval (default 1000)
//   TROUPE_HEARTBEAT_TIMEOUT_MS  a node or head silent this long is lost (default 5000)
//   TROUPE_CLUSTER_STATUS_FILE   `troupe head` writes its membership JSON here on every change
#include "runtime/config.hpp"

namespace troupe {

// Publishes the head actor on config.cluster_port (all interfaces) and runs until SIGINT/SIGTERM.
int run_head_node(const Config& config);

// Joins the head at config.join. With config.supervise, a parent process restarts the node
// process when it crashes and forwards SIGINT/SIGTERM to it.
int run_worker_node(const Config& config);

}  // namespace troupe
