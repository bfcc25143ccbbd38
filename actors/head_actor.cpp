#include "actors/head_actor.hpp"

#include <map>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "cluster/join_token.hpp"
#include "cluster/membership_status.hpp"
#include "runtime/logging.hpp"

namespace troupe {
namespace {

using cluster::Clock;
using cluster::NodeId;

// One group epoch's progress through prepare and wire.
struct Wiring {
  uint64_t epoch = 0;
  std::vector<std::string> addresses;  // [group_size]
  std::vector<int64_t> max_kv_blocks;  // [group_size], 0 = not prepared yet
  std::vector<std::vector<uint8_t>> nccl_unique_ids;  // [group_size] (--stage-transport nccl)
  std::vector<std::string> device_ids;                // [group_size]
  bool wired_sent = false;
};

// A group leader's engine load, from its last heartbeat.
struct LeaderLoad {
  int64_t num_kv_blocks_used = 0;
  int64_t num_kv_blocks_total = 0;
  int64_t num_preemptions_total = 0;  // as the engine reported it (resets with a new engine)
  std::vector<int64_t> iteration_tokens_counts;  // likewise
  int64_t iteration_tokens_sum = 0;
};

// A group's engine-step histogram over all its epochs and engines.
struct IterationTokens {
  std::vector<int64_t> counts;  // by kIterationTokensBounds bucket, +Inf last
  int64_t sum = 0;
};

struct HeadState {
  HeadOptions options;
  std::unique_ptr<cluster::Membership> membership;
  std::unique_ptr<cluster::RequestRouter> router;
  std::map<int64_t, Wiring> wiring;  // by group
  std::map<NodeId, caf::actor> agents;
  std::map<caf::actor_addr, NodeId> node_of;
  std::map<NodeId, LeaderLoad> loads;                 // leaders' heartbeats
  std::map<int64_t, int64_t> num_preemptions_total;  // by group, over all its epochs and engines
  std::map<int64_t, IterationTokens> iteration_tokens;  // by group, likewise
  std::shared_ptr<spdlog::logger> logger = log::get("cluster");
  static inline const char* name = "troupe.head";
};

using HeadActor = caf::stateful_actor<HeadState>;

ClusterStats cluster_stats(const HeadState& s) {
  ClusterStats stats;
  stats.enabled = true;
  stats.num_nodes = s.membership->num_active_nodes();
  stats.num_requests_resumed_total = s.router->num_resumed_total();
  for (const auto& group : s.membership->groups()) {
    GroupStats g;
    g.group_id = group.group_id;
    g.state = cluster::to_string(group.state);
    g.epoch = group.epoch;
    g.num_restarts = group.num_restarts;
    g.last_error = group.last_error;
    for (NodeId id : group.members) g.num_members += id != 0 ? 1 : 0;
    g.num_running = s.router->num_running_on(group.group_id);
    auto load = group.members.empty() ? s.loads.end() : s.loads.find(group.members[0]);
    if (load != s.loads.end() && group.state == cluster::GroupState::ready) {
      g.num_kv_blocks_used = load->second.num_kv_blocks_used;
      g.num_kv_blocks_total = load->second.num_kv_blocks_total;
    }
    auto preempted = s.num_preemptions_total.find(group.group_id);
    if (preempted != s.num_preemptions_total.end()) g.num_preemptions_total = preempted->second;
    auto steps = s.iteration_tokens.find(group.group_id);
    if (steps != s.iteration_tokens.end()) {
      g.iteration_tokens_counts = steps->second.counts;
      g.iteration_tokens_sum = steps->second.sum;
    }
    stats.num_groups_ready += group.state == cluster::GroupState::ready ? 1 : 0;
    stats.groups.push_back(g);
  }
  return stats;
}

// Adds what an engine's step histogram gained since `last` (a smaller bucket or sum: a new engine,
// which restarts at 0, so it counts whole).
void add_iteration_tokens(IterationTokens& total, const LeaderLoad& last, const heartbeat& beat) {
  const std::vector<int64_t>& reported = beat.iteration_tokens_counts;
  bool restarted = beat.iteration_tokens_sum < last.iteration_tokens_sum ||
                   reported.size() != last.iteration_tokens_counts.size();
  for (size_t i = 0; !restarted && i < reported.size(); ++i)
    restarted = reported[i] < last.iteration_tokens_counts[i];
  if (total.counts.size() < reported.size()) total.counts.resize(reported.size(), 0);
  for (size_t i = 0; i < reported.size(); ++i)
    total.counts[i] += restarted ? reported[i] : reported[i] - last.iteration_tokens_counts[i];
  total.sum += restarted ? beat.iteration_tokens_sum : beat.iteration_tokens_sum - last.iteration_tokens_sum;
}

// Keeps a leader's load; its preemption counter and step histogram add to its group's totals (a
// new engine restarts at 0, so a smaller value counts whole).
void record_load(HeadState& s, const heartbeat& beat) {
  const cluster::NodeInfo* node = s.membership->node(beat.node_id);
  if (node == nullptr || node->group_id < 0 || node->stage_index != 0) return;
  LeaderLoad& load = s.loads[beat.node_id];
  const int64_t reported = beat.num_preemptions_total;
  s.num_preemptions_total[node->group_id] +=
      reported >= load.num_preemptions_total ? reported - load.num_preemptions_total : reported;
  add_iteration_tokens(s.iteration_tokens[node->group_id], load, beat);
  load = LeaderLoad{beat.num_kv_blocks_used, beat.num_kv_blocks_total, reported, beat.iteration_tokens_counts,
                    beat.iteration_tokens_sum};
}

void publish_to_front_door(HeadActor* self) {
  auto& s = self->state;
  if (s.options.front_door) self->send(s.options.front_door, publish_cluster{cluster_stats(s), s.router->num_waiting()});
}

void publish_status(HeadActor* self) {
  auto& s = self->state;
  publish_to_front_door(self);
  if (s.options.status_file.empty()) return;
  Status written = cluster::write_file_atomically(s.options.status_file,
                                                  cluster::membership_to_json(*s.membership, s.options.head_epoch));
  if (!written.ok()) s.logger->warn("{}", written.error().message);
}

void send_start(HeadActor* self, int64_t group_id) {
  auto& s = self->state;
  const cluster::GroupInfo& group = s.membership->group(group_id);
  std::string members;
  for (NodeId id : group.members) members += (members.empty() ? "" : ", ") + std::to_string(id);
  s.logger->info("group {} formed: epoch {}, members [{}]", group_id, group.epoch, members);
  for (size_t stage = 0; stage < group.members.size(); ++stage) {
    auto agent = s.agents.find(group.members[stage]);
    if (agent == s.agents.end()) continue;
    start_group start{group_id, group.epoch, static_cast<int64_t>(stage), group.members, {}};
    if (!s.options.stage_specs.empty()) start.spec = s.options.stage_specs[stage];
    start.spec.group_id = group_id;  // the key of this epoch's NCCL links
    start.spec.epoch = group.epoch;
    self->send(agent->second, std::move(start));
  }
  Wiring& wiring = s.wiring[group_id];
  wiring = Wiring{};
  wiring.epoch = group.epoch;
  wiring.addresses.assign(group.members.size(), "");
  wiring.max_kv_blocks.assign(group.members.size(), 0);
  wiring.nccl_unique_ids.assign(group.members.size(), {});
  wiring.device_ids.assign(group.members.size(), "");
}

void lose_node(HeadActor* self, NodeId node_id, const std::string& why);

// Carries out what the router decided: restart broken groups, cancel, dispatch, deliver.
void apply(HeadActor* self, cluster::RouterActions actions) {
  auto& s = self->state;
  for (int64_t group_id : actions.broken_groups) {
    const cluster::GroupInfo& group = s.membership->group(group_id);
    if (group.state != cluster::GroupState::ready || group.members.empty() || group.members[0] == 0) continue;
    lose_node(self, group.members[0], "its engine failed a request: restarting group " + std::to_string(group_id));
  }
  auto leader_of = [&](int64_t group_id) -> caf::actor {
    const cluster::GroupInfo& group = s.membership->group(group_id);
    if (group.members.empty()) return nullptr;
    auto agent = s.agents.find(group.members[0]);
    return agent == s.agents.end() ? nullptr : agent->second;
  };
  for (auto& cancel : actions.cancellations)
    if (auto leader = leader_of(cancel.group_id))
      self->send(leader, cancel_generate{cancel.group_id, s.membership->group(cancel.group_id).epoch,
                                         cancel.engine_request_id});
  for (auto& dispatch : actions.dispatches) {
    auto leader = leader_of(dispatch.group_id);
    if (!leader) {
      // Cannot happen while the group is ready; the request fails over like a failed attempt.
      GenerationOutput failed;
      failed.finish_reason = FinishReason::error;
      failed.error_message = "group " + std::to_string(dispatch.group_id) + " has no leader";
      self->send(self, generate_output{dispatch.request.request_id, failed});
      continue;
    }
    self->send(leader, generate_request{dispatch.group_id, s.membership->group(dispatch.group_id).epoch,
                                        std::move(dispatch.request)});
  }
  if (s.options.front_door)
    for (auto& delivery : actions.deliveries)
      self->send(s.options.front_door, deliver_output{std::move(delivery.request_id), std::move(delivery.output)});
}

// Every member prepared: tell each the chain's addresses and the group's KV block count.
void maybe_wire(HeadActor* self, int64_t group_id) {
  auto& s = self->state;
  const cluster::GroupInfo& group = s.membership->group(group_id);
  auto it = s.wiring.find(group_id);
  if (it == s.wiring.end() || it->second.epoch != group.epoch || it->second.wired_sent) return;
  Wiring& wiring = it->second;
  int64_t blocks = 0;
  for (int64_t b : wiring.max_kv_blocks) {
    if (b <= 0) return;
    blocks = blocks == 0 ? b : std::min(blocks, b);
  }
  wiring.wired_sent = true;
  s.logger->info("group {} epoch {}: every stage prepared; wiring the pipeline with {} KV blocks", group_id,
                 group.epoch, blocks);
  // The NCCL ids travel only when every stage made one (--stage-transport nccl).
  bool nccl = !wiring.nccl_unique_ids.empty();
  for (const auto& id : wiring.nccl_unique_ids) nccl = nccl && !id.empty();
  wire_group wire{group_id, group.epoch, wiring.addresses, blocks, {}, {}};
  if (nccl) {
    wire.nccl_unique_ids = wiring.nccl_unique_ids;
    wire.device_ids = wiring.device_ids;
  }
  for (NodeId member : group.members)
    if (auto agent = s.agents.find(member); agent != s.agents.end()) self->send(agent->second, wire);
}

// one_for_all: the lost node's group stops everywhere and waits for the slot to be filled again.
void lose_node(HeadActor* self, NodeId node_id, const std::string& why) {
  auto& s = self->state;
  const cluster::NodeInfo* node = s.membership->node(node_id);
  if (node == nullptr) return;
  const auto silent_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - node->last_heartbeat).count();
  auto loss = s.membership->mark_lost(node_id, Clock::now(), why);
  if (!loss.ok()) return;
  s.logger->warn("node {} lost ({}); last heartbeat {} ms ago", node_id, why, silent_ms);
  if (auto agent = s.agents.find(node_id); agent != s.agents.end()) {
    self->demonitor(agent->second);
    s.node_of.erase(agent->second.address());
    if (loss->group_id >= 0) self->send(agent->second, stop_group{loss->group_id, loss->old_epoch, why});
    s.agents.erase(agent);
  }
  if (loss->group_id >= 0 && loss->new_state != cluster::GroupState::forming) {
    const std::string reason = "node " + std::to_string(node_id) + " lost";
    if (loss->new_state == cluster::GroupState::failed)
      s.logger->error("group {} failed: more than {} restarts in {} ms", loss->group_id,
                      s.options.intensity.max_restarts, s.options.intensity.window.count());
    else
      s.logger->warn("group {} restarting (one_for_all): stopping epoch {} on {} other member(s)", loss->group_id,
                     loss->old_epoch, loss->to_stop.size());
    for (NodeId other : loss->to_stop)
      if (auto agent = s.agents.find(other); agent != s.agents.end())
        self->send(agent->second, stop_group{loss->group_id, loss->old_epoch, reason});
  }
  if (loss->group_id >= 0)
    apply(self, s.router->group_lost(loss->group_id, "node " + std::to_string(node_id) + " lost (" + why + ")",
                                     Clock::now()));
  if (loss->spare != 0) {
    const cluster::NodeInfo* spare = s.membership->node(loss->spare);
    s.logger->info("spare node {} takes group {} stage {}", loss->spare, spare->group_id, spare->stage_index);
    if (loss->group_formed)
      self->send(self, form_atom::value, spare->group_id, s.membership->group(spare->group_id).epoch);
  }
  publish_status(self);
}

join_reply handle_join(HeadActor* self, join_request& request) {
  auto& s = self->state;
  join_reply reply;
  reply.head_epoch = s.options.head_epoch;
  if (!cluster::tokens_equal(s.options.token, request.token)) {
    // NOTE: neither the expected nor the given token appears in the log.
    s.logger->warn("refused join from host {} (pid {}): wrong join token", request.host, request.pid);
    reply.reason = "wrong join token";
    return reply;
  }
  auto agent = caf::actor_cast<caf::actor>(self->current_sender());
  if (!agent) {
    reply.reason = "join request without a reply address";
    return reply;
  }
  // A repeated join from the same agent (its reply timed out) replaces its earlier registration.
  if (auto known = s.node_of.find(agent.address()); known != s.node_of.end())
    lose_node(self, known->second, "joined again");
  auto joined = s.membership->join(request.host, request.pid, request.worker_index, request.resources, Clock::now());
  s.agents[joined.node_id] = agent;
  s.node_of[agent.address()] = joined.node_id;
  self->monitor(agent);
  s.logger->info("node {} joined from host {} (pid {}, worker index {}, {} GPUs, {} cores): group {} stage {}",
                 joined.node_id, request.host, request.pid, request.worker_index, request.resources.num_gpus,
                 request.resources.cpu_cores, joined.group_id, joined.stage_index);
  if (joined.group_id < 0) s.logger->warn("node {} waits: every group is full or failed", joined.node_id);
  // Sent after this reply, so the agent knows its node id before its assignment arrives.
  if (joined.group_formed) self->send(self, form_atom::value, joined.group_id, joined.epoch);
  publish_status(self);
  reply.accepted = true;
  reply.node_id = joined.node_id;
  reply.group_id = joined.group_id;
  reply.stage_index = joined.stage_index;
  reply.epoch = joined.epoch;
  return reply;
}

caf::behavior head_behavior(HeadActor* self, HeadOptions options) {
  auto& s = self->state;
  s.options = std::move(options);
  s.membership = std::make_unique<cluster::Membership>(s.options.num_groups, s.options.group_size,
                                                       s.options.intensity);
  s.router = std::make_unique<cluster::RequestRouter>(s.options.router);
  self->set_down_handler([self](caf::down_msg& down) {
    auto it = self->state.node_of.find(down.source);
    if (it == self->state.node_of.end()) return;
    lose_node(self, it->second, "connection lost: " + self->system().render(down.reason));
  });
  publish_status(self);
  self->send(self, tick_atom::value);
  return {
      [self](join_request& request) { return handle_join(self, request); },
      [self](const heartbeat& beat) {
        Status known = self->state.membership->heartbeat(beat.node_id, Clock::now());
        if (known.ok()) record_load(self->state, beat);
        return heartbeat_ack{known.ok(), self->state.options.head_epoch};
      },
      [self](const stage_prepared& prepared) {
        auto& st = self->state;
        const cluster::NodeInfo* node = st.membership->node(prepared.node_id);
        if (node == nullptr || node->group_id != prepared.group_id ||
            st.membership->group(prepared.group_id).epoch != prepared.epoch)
          return;  // stale
        if (!prepared.error.empty()) {
          lose_node(self, prepared.node_id, "stage failed to load: " + prepared.error);
          return;
        }
        auto it = st.wiring.find(prepared.group_id);
        if (it == st.wiring.end() || it->second.epoch != prepared.epoch) return;
        it->second.addresses[size_t(node->stage_index)] = prepared.data_address;
        it->second.max_kv_blocks[size_t(node->stage_index)] = prepared.max_kv_blocks;
        it->second.nccl_unique_ids[size_t(node->stage_index)] = prepared.nccl_unique_id;
        it->second.device_ids[size_t(node->stage_index)] = prepared.device_id;
        maybe_wire(self, prepared.group_id);
      },
      [self](const stage_failed& failed) {
        auto& st = self->state;
        const cluster::NodeInfo* node = st.membership->node(failed.node_id);
        if (node == nullptr || node->group_id != failed.group_id ||
            st.membership->group(failed.group_id).epoch != failed.epoch)
          return;  // stale: an earlier epoch's link
        lose_node(self, failed.node_id, "its stage failed: " + failed.reason);
      },
      [self](const group_loaded& loaded) {
        auto& st = self->state;
        if (!loaded.error.empty()) {
          const cluster::NodeInfo* node = st.membership->node(loaded.node_id);
          if (node != nullptr && node->group_id == loaded.group_id &&
              st.membership->group(loaded.group_id).epoch == loaded.epoch)
            lose_node(self, loaded.node_id, "stage failed to wire: " + loaded.error);
          return;
        }
        auto ready = st.membership->mark_loaded(loaded.node_id, loaded.epoch);
        if (ready.ok() && *ready) {
          st.logger->info("group {} ready: epoch {}", loaded.group_id, loaded.epoch);
          apply(self, st.router->group_ready(loaded.group_id, Clock::now()));
          publish_status(self);
        }
      },
      [self](route_request& route) { apply(self, self->state.router->submit(std::move(route.request), Clock::now())); },
      [self](const cancel_request& cancel) { apply(self, self->state.router->cancel(cancel.request_id)); },
      [self](generate_output& out) {
        auto& st = self->state;
        apply(self, st.router->on_output(out.engine_request_id, out.output, Clock::now()));
      },
      [self](form_atom, int64_t group_id, uint64_t epoch) {
        const cluster::GroupInfo& group = self->state.membership->group(group_id);
        if (group.epoch == epoch && group.state == cluster::GroupState::loading) send_start(self, group_id);
      },
      [self](tick_atom) {
        auto& st = self->state;
        for (NodeId id : st.membership->expired(Clock::now(), st.options.heartbeat_timeout))
          lose_node(self, id, "no heartbeat for " + std::to_string(st.options.heartbeat_timeout.count()) + " ms");
        apply(self, st.router->expire(Clock::now()));
        publish_to_front_door(self);
        self->delayed_send(self, st.options.heartbeat_interval / 2, tick_atom::value);
      },
      [self](status_atom) {
        return cluster::membership_to_json(*self->state.membership, self->state.options.head_epoch);
      },
  };
}

}  // namespace

caf::actor spawn_head(caf::actor_system& system, HeadOptions options) {
  return system.spawn(head_behavior, std::move(options));
}

}  // namespace troupe
