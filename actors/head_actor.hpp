#pragma once
// The head node's actor: registry of nodes and groups, one_for_all supervisor of each group.
//
//   join_request --(token ok)--> registered, monitored --(group full)--> start_group (new epoch)
//   down_msg / no heartbeat for heartbeat_timeout --> node lost --> stop_group(old epoch) to the
//   group's other members --> the group waits in `restarting` for a node to fill the free slot.
//
// With a model (stage_specs not empty) a started group loads in two phases: every member
// prepares its stage (stage_prepared: layers loaded, listener open), then the head sends every
// member the chain's addresses (wire_group); once all are wired the group is ready and the
// head's RequestRouter sends it requests. A lost group's requests resume on another group.
// Requests arrive from the front door (actors/head_front_door.hpp) as messages; outputs and the
// cluster's state go back to the front door's mailbox as messages.
#include <chrono>
#include <cstdint>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "cluster/membership.hpp"
#include "cluster/request_router.hpp"
#include "pipeline/stage_plan.hpp"

namespace troupe {

struct HeadOptions {
  std::string token;
  int64_t num_groups = 1;  // --replicas
  int64_t group_size = 1;  // --pipeline-parallel-size
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{5000};
  cluster::RestartIntensity intensity;
  std::string status_file;  // written on every change when not empty
  uint64_t head_epoch = 0;  // this head's incarnation (start time), sent to every node
  std::vector<cluster::ModelStageSpec> stage_specs;  // [group_size]; empty: membership only, no model
  cluster::RouterOptions router;
  std::chrono::milliseconds wire_timeout{30000};
  // The front door's mailbox (spawn_front_door_mailbox): gets deliver_output and publish_cluster.
  // Null: membership only. Requests come in as route_request / cancel_request.
  caf::actor front_door;
};

// Spawns the head actor. It answers `status_atom` with the membership as JSON.
caf::actor spawn_head(caf::actor_system& system, HeadOptions options);

}  // namespace troupe
