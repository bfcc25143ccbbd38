#pragma once
// Every message the cluster's actors exchange: small structs with `inspect` overloads, registered
// with CAF in one type-id block (`caf::id_block::troupe`). Include only from actors/*.cpp.
//
//   node_agent                                  head
//      |--- join_request{token, host, ...} ------->|  wrong token: join_reply{accepted=false}
//      |<-- join_reply{node_id, group, stage} -----|
//      |--- heartbeat{node_id} (request) --------->|  every heartbeat interval
//      |<-- heartbeat_ack{known} ------------------|  known=false: declared lost, join again
//      |<-- start_group{group, epoch, stage} ------|  the group is full: a new epoch
//      |--- group_loaded{node_id, group, epoch} -->|  all loaded: the group is ready
//      |<-- stop_group{group, epoch, reason} ------|  a member was lost (one_for_all)
#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "cluster/membership.hpp"

namespace troupe::cluster {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeResources& x) {
  return f(caf::meta::type_name("troupe.node_resources"), x.num_gpus, x.memory_bytes, x.cpu_cores, x.ucx_address);
}

}  // namespace troupe::cluster

namespace troupe {

// Atoms for timers and queries (at most 10 characters each).
using tick_atom = caf::atom_constant<caf::atom("tr_tick")>;        // head: check heartbeats
using connect_now_atom = caf::atom_constant<caf::atom("tr_conn")>;  // agent: (re)connect
using beat_atom = caf::atom_constant<caf::atom("tr_beat")>;        // agent: send a heartbeat
using form_atom = caf::atom_constant<caf::atom("tr_form")>;        // head: start a formed group
using status_atom = caf::atom_constant<caf::atom("tr_status")>;    // head: membership as JSON

struct join_request {
  std::string token;  // never logged
  std::string host;
  int64_t pid = 0;
  cluster::NodeResources resources;
  int64_t worker_index = -1;
};

struct join_reply {
  bool accepted = false;
  uint64_t node_id = 0;
  int64_t group_id = -1;    // -1: no free slot (yet)
  int64_t stage_index = -1;
  uint64_t epoch = 0;       // the group's epoch at join time
  uint64_t head_epoch = 0;  // changes when the head restarts
  std::string reason;       // why not accepted
};

struct heartbeat {
  uint64_t node_id = 0;
};

struct heartbeat_ack {
  bool known = false;  // false: the head declared this node lost; it must join again
  uint64_t head_epoch = 0;
};

// The stage assignment of one member for one epoch of its group.
struct start_group {
  int64_t group_id = -1;
  uint64_t epoch = 0;
  int64_t stage_index = -1;
  std::vector<uint64_t> members;  // [group_size] node ids, by stage
};

struct group_loaded {
  uint64_t node_id = 0;
  int64_t group_id = -1;
  uint64_t epoch = 0;
};

struct stop_group {
  int64_t group_id = -1;
  uint64_t epoch = 0;  // only work of this epoch stops; stale stops are ignored
  std::string reason;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, join_request& x) {
  return f(caf::meta::type_name("troupe.join_request"), x.token, x.host, x.pid, x.resources, x.worker_index);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, join_reply& x) {
  return f(caf::meta::type_name("troupe.join_reply"), x.accepted, x.node_id, x.group_id, x.stage_index, x.epoch,
           x.head_epoch, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, heartbeat& x) {
  return f(caf::meta::type_name("troupe.heartbeat"), x.node_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, heartbeat_ack& x) {
  return f(caf::meta::type_name("troupe.heartbeat_ack"), x.known, x.head_epoch);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, start_group& x) {
  return f(caf::meta::type_name("troupe.start_group"), x.group_id, x.epoch, x.stage_index, x.members);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_loaded& x) {
  return f(caf::meta::type_name("troupe.group_loaded"), x.node_id, x.group_id, x.epoch);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stop_group& x) {
  return f(caf::meta::type_name("troupe.stop_group"), x.group_id, x.epoch, x.reason);
}

}  // namespace troupe

CAF_BEGIN_TYPE_ID_BLOCK(troupe, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(troupe, (troupe::cluster::NodeResources))
  CAF_ADD_TYPE_ID(troupe, (troupe::join_request))
  CAF_ADD_TYPE_ID(troupe, (troupe::join_reply))
  CAF_ADD_TYPE_ID(troupe, (troupe::heartbeat))
  CAF_ADD_TYPE_ID(troupe, (troupe::heartbeat_ack))
  CAF_ADD_TYPE_ID(troupe, (troupe::start_group))
  CAF_ADD_TYPE_ID(troupe, (troupe::group_loaded))
  CAF_ADD_TYPE_ID(troupe, (troupe::stop_group))
CAF_END_TYPE_ID_BLOCK(troupe)
