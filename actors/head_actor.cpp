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

struct HeadState {
  HeadOptions options;
  std::unique_ptr<cluster::Membership> membership;
  std::map<NodeId, caf::actor> agents;
  std::map<caf::actor_addr, NodeId> node_of;
  std::shared_ptr<spdlog::logger> logger = log::get("cluster");
  static inline const char* name = "troupe.head";
};

using HeadActor = caf::stateful_actor<HeadState>;

void publish_status(HeadActor* self) {
  auto& s = self->state;
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
    self->send(agent->second, start_group{group_id, group.epoch, static_cast<int64_t>(stage), group.members});
  }
}

// one_for_all: the lost node's group stops everywhere and waits for the slot to be filled again.
void lose_node(HeadActor* self, NodeId node_id, const std::string& why) {
  auto& s = self->state;
  const cluster::NodeInfo* node = s.membership->node(node_id);
  if (node == nullptr) return;
  const auto silent_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - node->last_heartbeat).count();
  auto loss = s.membership->mark_lost(node_id, Clock::now());
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
        return heartbeat_ack{known.ok(), self->state.options.head_epoch};
      },
      [self](const group_loaded& loaded) {
        auto ready = self->state.membership->mark_loaded(loaded.node_id, loaded.epoch);
        if (ready.ok() && *ready) {
          self->state.logger->info("group {} ready: epoch {}", loaded.group_id, loaded.epoch);
          publish_status(self);
        }
      },
      [self](form_atom, int64_t group_id, uint64_t epoch) {
        const cluster::GroupInfo& group = self->state.membership->group(group_id);
        if (group.epoch == epoch && group.state == cluster::GroupState::loading) send_start(self, group_id);
      },
      [self](tick_atom) {
        auto& st = self->state;
        for (NodeId id : st.membership->expired(Clock::now(), st.options.heartbeat_timeout))
          lose_node(self, id, "no heartbeat for " + std::to_string(st.options.heartbeat_timeout.count()) + " ms");
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
