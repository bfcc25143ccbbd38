#pragma once
// Every message the cluster's actors exchange: small structs with `inspect` overloads, registered
// with CAF in one type-id block (`caf::id_block::troupe`). Include only from actors/*.cpp.
//
//   node_agent                                  head
//      |--- join_request{token, host, ...} ------->|  wrong token: join_reply{accepted=false}
//      |<-- join_reply{node_id, group, stage} -----|
//      |--- heartbeat{node_id, kv, preempts, ...} >|  every heartbeat interval (load: leaders only)
//      |<-- heartbeat_ack{known} ------------------|  known=false: declared lost, join again
//      |<-- start_group{group, epoch, spec} -------|  the group is full: a new epoch
//      |--- stage_prepared{address, kv blocks, --->|  layers loaded, tensor listener open (host) or
//      |       nccl id, device}                   |  the NCCL id of the link it sends on (nccl)
//      |<-- wire_group{addresses, kv blocks, ------|  every stage prepared: connect the chain
//      |       nccl ids, devices}                 |  (pipeline/stage_wiring.hpp)
//      |--- stage_failed{node_id, group, epoch} -->|  a later stage's NCCL link failed: restart
//      |--- group_loaded{node_id, group, epoch} -->|  all wired: the group is ready
//      |<-- stop_group{group, epoch, reason} ------|  a member was lost (one_for_all)
//
//   head                                        group leader (stage 0's agent)
//      |--- generate_request{group, epoch, req} -->|  engine.submit("<id>#<attempt>")
//      |<-- generate_output{engine id, output} ----|  one per engine output (anon_send)
//      |--- cancel_generate{group, epoch, id} ---->|
//
//   HeadFrontDoor (HTTP threads)                head (same process)            front door's mailbox
//      |--- route_request{request} ------------->|                                    |
//      |--- cancel_request{id} ----------------->|                                    |
//                                                |--- deliver_output{id, output} ---->|  to the request's callback
//                                                |--- publish_cluster{stats} -------->|  on every change and tick
#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "cluster/membership.hpp"
#include "pipeline/stage_plan.hpp"
#include "pipeline/stage_wiring.hpp"
#include "engine/serving_engine.hpp"
#include "runtime/engine_args.hpp"

namespace troupe {

// The one list of EngineArgs' fields on the wire (a new field goes here too).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, EngineArgs& x) {
  return f(caf::meta::type_name("troupe.engine_args"), x.model, x.load_format, x.dtype, x.max_model_len,
           x.max_num_seqs, x.max_num_batched_tokens, x.block_size, x.num_kv_blocks, x.gpu_memory_utilization,
           x.cpu_kv_cache_mb, x.seed, x.tensor_parallel_size, x.enable_prefix_caching,
           x.kv_cache_dtype, x.all2all_backend);
}

}  // namespace troupe

namespace troupe::cluster {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ModelStageSpec& x) {
  return f(caf::meta::type_name("troupe.model_stage_spec"), x.engine, x.stage_index, x.num_stages, x.layer_begin,
           x.layer_end, x.stage_transport, x.group_id, x.epoch);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeResources& x) {
  return f(caf::meta::type_name("troupe.node_resources"), x.num_gpus, x.memory_bytes, x.cpu_cores, x.ucx_address);
}

}  // namespace troupe::cluster

namespace troupe {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LogitBias& x) {
  return f(caf::meta::type_name("troupe.logit_bias"), x.token_id, x.bias);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, OutputConstraint& x) {
  return f(caf::meta::type_name("troupe.output_constraint"), x.kind, x.spec);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SamplingParams& x) {
  return f(caf::meta::type_name("troupe.sampling_params"), x.temperature, x.top_p, x.top_k, x.min_p,
           x.repetition_penalty, x.presence_penalty, x.frequency_penalty, x.seed, x.max_tokens, x.stop_token_ids,
           x.ignore_eos, x.logprobs, x.logit_bias, x.min_tokens, x.constraint, x.prompt_logprobs);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GenerationRequest& x) {
  return f(caf::meta::type_name("troupe.generation_request"), x.request_id, x.prompt_ids, x.params);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GroupStats& x) {
  return f(caf::meta::type_name("troupe.group_stats"), x.group_id, x.state, x.epoch, x.num_restarts, x.last_error,
           x.num_members, x.num_running, x.num_kv_blocks_used, x.num_kv_blocks_total, x.num_preemptions_total,
           x.iteration_tokens_counts, x.iteration_tokens_sum);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ClusterStats& x) {
  return f(caf::meta::type_name("troupe.cluster_stats"), x.enabled, x.num_nodes, x.num_groups_ready,
           x.num_requests_resumed_total, x.groups);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PromptLogprob& x) {
  return f(caf::meta::type_name("troupe.prompt_logprob"), x.token_id, x.logprob, x.rank, x.top);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GenerationOutput& x) {
  return f(caf::meta::type_name("troupe.generation_output"), x.new_token_ids, x.logprobs, x.top_logprobs,
           x.finish_reason, x.error_message, x.num_prompt_tokens, x.num_generated_tokens, x.queue_time_s,
           x.num_cached_tokens, x.prompt_logprobs);
}

// Atoms for timers and queries (at most 10 characters each).
using tick_atom = caf::atom_constant<caf::atom("tr_tick")>;        // head: check heartbeats
using connect_now_atom = caf::atom_constant<caf::atom("tr_conn")>;  // agent: (re)connect
using beat_atom = caf::atom_constant<caf::atom("tr_beat")>;        // agent: send a heartbeat
using form_atom = caf::atom_constant<caf::atom("tr_form")>;        // head: start a formed group
using status_atom = caf::atom_constant<caf::atom("tr_status")>;    // head: membership as JSON
using prepared_atom = caf::atom_constant<caf::atom("tr_prep")>;    // agent: a stage host prepared
using wired_atom = caf::atom_constant<caf::atom("tr_wired")>;      // agent: a stage host wired

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
  // A group leader's engine load (0 on other stages): what /metrics shows for its group.
  int64_t num_kv_blocks_used = 0;
  int64_t num_kv_blocks_total = 0;
  int64_t num_preemptions_total = 0;  // of the engine of this epoch
  std::vector<int64_t> iteration_tokens_counts;  // of the engine of this epoch, by bucket (EngineStats')
  int64_t iteration_tokens_sum = 0;
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
  cluster::ModelStageSpec spec;        // what this member loads and runs
};

struct stage_prepared {
  uint64_t node_id = 0;
  int64_t group_id = -1;
  uint64_t epoch = 0;
  std::string data_address;  // the stage's tensor listener, "host:port" ("" with one stage or nccl)
  int64_t max_kv_blocks = 0;
  std::string error;  // not empty: loading failed
  // --stage-transport nccl: the ncclUniqueId of the link this stage sends on (to stage k+1), made
  // for this epoch, and the GPU it computes on ("<host>/pci:<bus id>"); empty with host.
  std::vector<uint8_t> nccl_unique_id;
  std::string device_id;
};

struct wire_group {
  int64_t group_id = -1;
  uint64_t epoch = 0;
  std::vector<std::string> data_addresses;  // [group_size], by stage
  int64_t num_kv_blocks = 0;                // the minimum every stage can hold
  std::vector<std::vector<uint8_t>> nccl_unique_ids;  // [group_size] with nccl, by stage; else empty
  std::vector<std::string> device_ids;                // likewise
};

// What a stage wires with (ModelStage::wire checks it is of its own group epoch).
inline cluster::StageWiring stage_wiring_of(const wire_group& wire) {
  cluster::StageWiring wiring;
  wiring.data_addresses = wire.data_addresses;
  wiring.num_kv_blocks = wire.num_kv_blocks;
  wiring.key = StageLinkKey{wire.group_id, wire.epoch};
  wiring.nccl_unique_ids = wire.nccl_unique_ids;
  wiring.device_ids = wire.device_ids;
  return wiring;
}

// A member's stage failed while serving in a way only it sees (an NCCL link of a later stage):
// the head restarts the group as for a lost member. Ignored unless of the group's current epoch.
struct stage_failed {
  uint64_t node_id = 0;
  int64_t group_id = -1;
  uint64_t epoch = 0;
  std::string reason;
};

struct group_loaded {
  uint64_t node_id = 0;
  int64_t group_id = -1;
  uint64_t epoch = 0;
  std::string error;  // not empty: wiring failed
};

struct generate_request {
  int64_t group_id = -1;
  uint64_t epoch = 0;
  GenerationRequest request;  // request_id "<id>#<attempt>"
};

struct generate_output {
  std::string engine_request_id;
  GenerationOutput output;
};

struct cancel_generate {
  int64_t group_id = -1;
  uint64_t epoch = 0;
  std::string engine_request_id;
};

// Between the head and its front door (one process; see actors/head_front_door.hpp).
struct route_request {
  GenerationRequest request;  // the client's id; the router adds "#<attempt>"
};

struct cancel_request {
  std::string request_id;
};

struct deliver_output {
  std::string request_id;
  GenerationOutput output;
};

struct publish_cluster {
  ClusterStats cluster;
  int64_t num_waiting = 0;  // requests waiting for a ready group
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
  return f(caf::meta::type_name("troupe.heartbeat"), x.node_id, x.num_kv_blocks_used, x.num_kv_blocks_total,
           x.num_preemptions_total, x.iteration_tokens_counts, x.iteration_tokens_sum);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, heartbeat_ack& x) {
  return f(caf::meta::type_name("troupe.heartbeat_ack"), x.known, x.head_epoch);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, start_group& x) {
  return f(caf::meta::type_name("troupe.start_group"), x.group_id, x.epoch, x.stage_index, x.members, x.spec);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_loaded& x) {
  return f(caf::meta::type_name("troupe.group_loaded"), x.node_id, x.group_id, x.epoch, x.error);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stage_prepared& x) {
  return f(caf::meta::type_name("troupe.stage_prepared"), x.node_id, x.group_id, x.epoch, x.data_address,
           x.max_kv_blocks, x.error, x.nccl_unique_id, x.device_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_group& x) {
  return f(caf::meta::type_name("troupe.wire_group"), x.group_id, x.epoch, x.data_addresses, x.num_kv_blocks,
           x.nccl_unique_ids, x.device_ids);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stage_failed& x) {
  return f(caf::meta::type_name("troupe.stage_failed"), x.node_id, x.group_id, x.epoch, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_request& x) {
  return f(caf::meta::type_name("troupe.generate_request"), x.group_id, x.epoch, x.request);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_output& x) {
  return f(caf::meta::type_name("troupe.generate_output"), x.engine_request_id, x.output);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cancel_generate& x) {
  return f(caf::meta::type_name("troupe.cancel_generate"), x.group_id, x.epoch, x.engine_request_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, route_request& x) {
  return f(caf::meta::type_name("troupe.route_request"), x.request);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cancel_request& x) {
  return f(caf::meta::type_name("troupe.cancel_request"), x.request_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, deliver_output& x) {
  return f(caf::meta::type_name("troupe.deliver_output"), x.request_id, x.output);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, publish_cluster& x) {
  return f(caf::meta::type_name("troupe.publish_cluster"), x.cluster, x.num_waiting);
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
  CAF_ADD_TYPE_ID(troupe, (troupe::stage_prepared))
  CAF_ADD_TYPE_ID(troupe, (troupe::wire_group))
  CAF_ADD_TYPE_ID(troupe, (troupe::stage_failed))
  CAF_ADD_TYPE_ID(troupe, (troupe::generate_request))
  CAF_ADD_TYPE_ID(troupe, (troupe::generate_output))
  CAF_ADD_TYPE_ID(troupe, (troupe::cancel_generate))
  CAF_ADD_TYPE_ID(troupe, (troupe::GenerationRequest))
  CAF_ADD_TYPE_ID(troupe, (troupe::route_request))
  CAF_ADD_TYPE_ID(troupe, (troupe::cancel_request))
  CAF_ADD_TYPE_ID(troupe, (troupe::deliver_output))
  CAF_ADD_TYPE_ID(troupe, (troupe::publish_cluster))
CAF_END_TYPE_ID_BLOCK(troupe)
