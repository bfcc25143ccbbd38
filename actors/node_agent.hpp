#pragma once
// One node agent per worker process: connects to the head, joins, heartbeats, holds this node's
// stage assignment and obeys start/stop. For each group epoch it runs a cluster::ModelStage
// (prepare on start_group, wire on wire_group, destroyed on stop_group) on helper threads, so
// the actor never blocks; as a group's leader it feeds generate_requests to the stage's engine
// and sends each output straight back to the head.
//
// Four named behaviours (node_agent.cpp: connecting, joining, joined, running), switched with
// become(); each also takes what may arrive late from an earlier state (stale timers, stage
// replies, messages in flight) and ignores it.
//
//   connecting --connected--> joining --accepted--> joined --start_group--> running
//     ^    |                    ^   |                  ^                     |   |
//     |    +-- unreachable:     |   +-- refused:       +------stop_group-----+   +-- start_group
//     |        retry, backoff   |       quit (exit 2)                                (new epoch):
//     |                         +-- heartbeat_ack{known=false} or a new head        running again
//     |                             epoch, from joined or running
//     +-- head lost (down, join or heartbeat unanswered), from joining, joined or running
//
// joined and running heartbeat every interval; leaving running releases the stage.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

#include "cluster/address.hpp"
#include "cluster/backoff.hpp"
#include "cluster/membership.hpp"
#include "cluster/worker_status.hpp"
#include "pipeline/model_stage.hpp"
#include "runtime/config.hpp"

namespace troupe {

struct AgentOptions {
  cluster::HostPort head;
  std::string token;
  std::string host;  // this machine's name, for the head's logs
  int64_t worker_index = -1;
  cluster::NodeResources resources;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{5000};
  // NOTE: capped at 1 s, so workers rejoin a restarted head within a second of it listening.
  cluster::BackoffPolicy reconnect{std::chrono::milliseconds(200), std::chrono::milliseconds(1000), 2.0, 0.2};
  Config local;                         // this worker's own settings (--device, --num-threads)
  cluster::BackendFactory make_backend;  // builds the backend a stage runs on
  cluster::ModelFactory make_model = cluster::load_single_rank_model;  // its layers (TP ranks too)
  std::string advertise_host = "127.0.0.1";
  std::chrono::milliseconds wire_timeout{30000};  // how other workers reach this one's tensor listener
  // Set before the agent quits on its own: kPermanentExitCode when the head refused the join, 1
  // when its stage's device failed (a fresh process may serve again).
  std::shared_ptr<std::atomic<int>> exit_code = std::make_shared<std::atomic<int>>(0);
  // What this node is doing, for its health port (written by the agent, read by HTTP).
  std::shared_ptr<cluster::WorkerStatus> status = std::make_shared<cluster::WorkerStatus>();
};

caf::actor spawn_node_agent(caf::actor_system& system, AgentOptions options);

}  // namespace troupe
