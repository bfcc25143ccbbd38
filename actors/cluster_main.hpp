#pragma once
// `troupe head` and `troupe worker` as plain functions (no CAF in this header). Each returns the
// process exit code and prints its own errors.
// Timing, the status file and the advertised host come from Config (--heartbeat-ms,
// --heartbeat-timeout-ms, --request-wait-ms, --status-file, --advertise-host; each flag's
// environment variable is its default, see cli/options.cpp).
#include <functional>
#include <memory>

#include "cluster/worker_status.hpp"
#include "pipeline/model_stage.hpp"
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

// A worker process's own HTTP endpoints (`--health-port`): started once its node agent runs,
// stopped before it exits; each restarted process starts them afresh.
struct WorkerServices {
  std::function<Status(std::shared_ptr<const cluster::WorkerStatus> status)> start;
  std::function<void()> stop;
};

// Joins the head at config.join. With config.supervise, a parent process restarts the node
// process when it crashes and forwards SIGINT/SIGTERM to it. Stages run on `make_backend`'s backend.
int run_worker_node(const Config& config, const cluster::BackendFactory& make_backend,
                    const cluster::ModelFactory& make_model = cluster::load_single_rank_model,
                    const WorkerServices& services = {});

}  // namespace troupe
