#pragma once
// `troupe head` and `troupe worker` as plain functions (no CAF in this header). Each returns the
// process exit code and prints its own errors.
//
// Tuning by environment (tests use short values):
//   TROUPE_HEARTBEAT_MS          heartbeat interval (default 1000)
//   TROUPE_HEARTBEAT_TIMEOUT_MS  a node or head silent this long is lost (default 5000)
//   TROUPE_CLUSTER_STATUS_FILE   `troupe head` writes its membership JSON here on every change
//   TROUPE_ADVERTISE_HOST        the name other workers reach this worker's tensor listener by
//                                (default: 127.0.0.1 when the head is on loopback, else hostname)
#include <functional>

#include "pipeline/stage_host.hpp"
#include "runtime/config.hpp"
#include "engine/serving_engine.hpp"

namespace troupe {

// What runs beside the head actor when config.model is set: `start` gets the cluster's serving
// engine once the head listens (the CLI starts the HTTP server there; an error stops the head);
// `stop` is called before that engine goes away.
struct HeadServices {
  std::function<Status(ServingEngine& engine)> start;
  std::function<void()> stop;
};

// Publishes the head actor on config.cluster_port (all interfaces) and runs until SIGINT/SIGTERM.
// With config.model, groups load the model's stages and requests are routed to ready groups.
int run_head_node(const Config& config, const HeadServices& services = {});

// Joins the head at config.join. With config.supervise, a parent process restarts the node
// process when it crashes and forwards SIGINT/SIGTERM to it. Stages run on `make_backend`'s backend.
int run_worker_node(const Config& config, const cluster::BackendFactory& make_backend,
                    const cluster::ModelFactory& make_model = cluster::load_single_rank_model);

}  // namespace troupe
