#pragma once
// One node agent per worker process: connects to the head, joins, heartbeats, holds this node's
// stage assignment and obeys start/stop. Stages and GPU workers will hang off it later.
//
//   connecting --(remote_actor ok)--> joining --(accepted)--> joined --(start_group)--> running
//       ^   |                            |                      |  ^                      |
//       |   +--(error: retry, backoff)   +--(refused: exit 2)   |  +------(stop_group)----+
//       +-------(head down / heartbeat unanswered for heartbeat_timeout)--------------------+
//   heartbeat_ack{known=false} (the head declared us lost): joining again.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

#include "cluster/address.hpp"
#include "cluster/backoff.hpp"
#include "cluster/membership.hpp"

namespace troupe {

struct AgentOptions {
  cluster::HostPort head;
  std::string token;
  std::string host;  // this machine's name, for the head's logs
  int64_t worker_index = -1;
  cluster::NodeResources resources;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{5000};
  cluster::BackoffPolicy reconnect{std::chrono::milliseconds(200), std::chrono::milliseconds(3000), 2.0, 0.2};
  // Set before the agent quits on its own: kPermanentExitCode when the head refused the join.
  std::shared_ptr<std::atomic<int>> exit_code = std::make_shared<std::atomic<int>>(0);
};

caf::actor spawn_node_agent(caf::actor_system& system, AgentOptions options);

}  // namespace troupe
