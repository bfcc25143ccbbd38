#include "actors/node_agent.hpp"

#include <unistd.h>

#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include "actors/messages.hpp"
#include "cluster/process_supervisor.hpp"
#include "runtime/logging.hpp"

namespace troupe {
namespace {

struct Assignment {
  int64_t group_id = -1;
  int64_t stage_index = -1;
  uint64_t epoch = 0;
  bool running = false;
};

// The stage host of the current assignment; helper threads fill `host` before they message us.
struct StageBox {
  std::shared_ptr<cluster::ModelStage> host;
};

struct AgentState {
  AgentOptions options;
  std::unique_ptr<cluster::Backoff> backoff;
  caf::actor head;
  uint64_t node_id = 0;
  uint64_t head_epoch = 0;
  uint64_t session = 0;  // +1 on every connection loss or rejoin; stale timers carry old values
  int64_t num_failed_connects = 0;
  Assignment assignment;
  std::shared_ptr<StageBox> box;             // of assignment.epoch, when a stage is prepared
  std::shared_ptr<cluster::ModelStage> host;  // prepared (and maybe wired) stage of assignment.epoch
  bool wired = false;
  std::shared_ptr<spdlog::logger> logger = log::get("cluster");
  static inline const char* name = "troupe.node_agent";
};

using AgentActor = caf::stateful_actor<AgentState>;

// The four states of the header's diagram, one behaviour each; each ends with late_messages().
caf::behavior connecting(AgentActor* self);
caf::behavior joining(AgentActor* self);
caf::behavior joined(AgentActor* self);
caf::behavior running(AgentActor* self);

// Tears the stage down on a helper thread: a pipeline step may wait on a hung peer a while.
void release_stage(AgentActor* self, const std::string& why) {
  auto& s = self->state;
  std::shared_ptr<cluster::ModelStage> host = std::move(s.host);
  s.host = nullptr;
  s.box = nullptr;
  s.wired = false;
  if (!host) return;
  host->abort(why);
  std::thread([host = std::move(host)]() mutable { host.reset(); }).detach();
}

void stop_work(AgentActor* self, const std::string& why) {
  auto& a = self->state.assignment;
  if (a.running)
    self->state.logger->warn("stopping stage {} of group {}, epoch {}: {}", a.stage_index, a.group_id, a.epoch, why);
  a.running = false;
  self->state.options.status->stage_stopped();
  release_stage(self, why);
}

void start_stage(AgentActor* self, const start_group& start) {
  auto& s = self->state;
  release_stage(self, "a new epoch starts");
  if (start.spec.engine.model.empty()) {  // membership only: nothing to load
    s.options.status->serving(start.epoch);
    if (s.head) self->send(s.head, group_loaded{s.node_id, start.group_id, start.epoch, ""});
    return;
  }
  auto box = std::make_shared<StageBox>();
  s.box = box;
  caf::actor me = caf::actor_cast<caf::actor>(self);
  std::thread([me, box, spec = start.spec, local = s.options.local, make_backend = s.options.make_backend,
               make_model = s.options.make_model, advertise = s.options.advertise_host, epoch = start.epoch] {
    auto host = cluster::ModelStage::prepare(spec, local, make_backend, advertise, make_model);
    std::string error;
    if (host.ok()) box->host = std::move(host.value());
    else error = host.error().message;
    caf::anon_send(me, prepared_atom::value, epoch, error);
  }).detach();
}

void on_prepared(AgentActor* self, uint64_t epoch, const std::string& error) {
  auto& s = self->state;
  if (!s.assignment.running || epoch != s.assignment.epoch || !s.box) return;  // stale
  stage_prepared reply{s.node_id, s.assignment.group_id, epoch, "", 0, error, {}, ""};
  if (error.empty()) {
    s.host = s.box->host;
    // The stage's device failed: leave with exit code 1, so the process supervisor starts a fresh
    // worker and the head, seeing this node gone, restarts the group (one_for_all).
    caf::actor me = caf::actor_cast<caf::actor>(self);
    s.host->set_on_failure([me, exit_code = s.options.exit_code, logger = s.logger](const std::string& why) {
      logger->error("the stage's device failed ({}); restarting this worker", why);
      exit_code->store(1);
      caf::anon_send_exit(me, caf::exit_reason::user_shutdown);
    });
    // A later stage's NCCL link failed: only this stage sees it, so the head hears it from us and
    // restarts the group (this worker stays: its device is fine).
    s.host->set_on_transport_failure([me, node_id = s.node_id, group = s.assignment.group_id, epoch,
                                      logger = s.logger](const std::string& why) {
      logger->error("stage of group {} epoch {} lost its NCCL link ({}); asking the head to restart the group",
                    group, epoch, why);
      caf::anon_send(me, stage_failed{node_id, group, epoch, why});
    });
    reply.data_address = s.host->preparation().data_address;
    reply.max_kv_blocks = s.host->preparation().max_kv_blocks;
    reply.nccl_unique_id = s.host->preparation().nccl_unique_id;
    reply.device_id = s.host->preparation().device_id;
  } else {
    s.logger->error("stage {} of group {} failed to load: {}", s.assignment.stage_index, s.assignment.group_id, error);
    s.options.status->failed(epoch, "load: " + error);
  }
  if (s.head) self->send(s.head, std::move(reply));
}

void wire_stage(AgentActor* self, const wire_group& wire) {
  auto& s = self->state;
  if (!s.assignment.running || wire.group_id != s.assignment.group_id || wire.epoch != s.assignment.epoch ||
      !s.host || s.wired)
    return;
  s.wired = true;
  caf::actor me = caf::actor_cast<caf::actor>(self);
  std::thread([me, host = s.host, wiring = stage_wiring_of(wire), epoch = wire.epoch, timeout = s.options.wire_timeout] {
    Status wired = host->wire(wiring, timeout);
    caf::anon_send(me, wired_atom::value, epoch, wired.ok() ? std::string() : wired.error().message);
  }).detach();
}

void on_wired(AgentActor* self, uint64_t epoch, const std::string& error) {
  auto& s = self->state;
  if (!s.assignment.running || epoch != s.assignment.epoch) return;
  if (!error.empty()) {
    s.logger->error("stage {} of group {} failed to wire: {}", s.assignment.stage_index, s.assignment.group_id, error);
    s.options.status->failed(epoch, "wire: " + error);
  } else {
    s.logger->info("stage {} of group {} epoch {} wired", s.assignment.stage_index, s.assignment.group_id, epoch);
    s.options.status->serving(epoch);
  }
  if (s.head) self->send(s.head, group_loaded{s.node_id, s.assignment.group_id, epoch, error});
}

// As the group's leader: run the request on the stage's engine; outputs go straight to the head.
void generate(AgentActor* self, generate_request& request) {
  auto& s = self->state;
  caf::actor head = s.head;
  const std::string id = request.request.request_id;
  auto reply_error = [&](const std::string& message) {
    GenerationOutput failed;
    failed.finish_reason = FinishReason::error;
    failed.error_message = message;
    if (head) self->send(head, generate_output{id, failed});
  };
  if (request.group_id != s.assignment.group_id || request.epoch != s.assignment.epoch || !s.host ||
      s.host->engine() == nullptr)
    return reply_error("this node does not lead group " + std::to_string(request.group_id) + " epoch " +
                       std::to_string(request.epoch));
  Status submitted = s.host->engine()->submit(std::move(request.request), [head, id](const GenerationOutput& out) {
    caf::anon_send(head, generate_output{id, out});
  });
  if (!submitted.ok()) reply_error(submitted.error().message);
}

void retry_connect(AgentActor* self) {
  const auto delay = self->state.backoff->next();
  self->delayed_send(self, delay, connect_now_atom::value, self->state.session);
}

void lose_head(AgentActor* self, const std::string& why) {
  auto& s = self->state;
  if (!s.head) return;
  s.logger->warn("head lost ({}); reconnecting", why);
  stop_work(self, "head lost");
  s.options.status->connecting("head lost: " + why);
  s.assignment = Assignment{};  // a new head counts epochs afresh
  self->demonitor(s.head);
  s.head = nullptr;
  s.node_id = 0;
  ++s.session;
  retry_connect(self);
  self->become(connecting(self));
}

void send_join(AgentActor* self) {
  auto& s = self->state;
  join_request request{s.options.token, s.options.host, static_cast<int64_t>(::getpid()), s.options.resources,
                       s.options.worker_index};
  const uint64_t session = s.session;
  self->request(s.head, s.options.heartbeat_timeout, std::move(request))
      .then(
          [self, session](join_reply& reply) {
            auto& st = self->state;
            if (session != st.session) return;
            if (!reply.accepted) {
              st.logger->error("the head refused this node: {}", reply.reason);
              st.options.exit_code->store(cluster::kPermanentExitCode);
              self->quit();
              return;
            }
            st.node_id = reply.node_id;
            st.head_epoch = reply.head_epoch;
            st.backoff->reset();
            st.options.status->joined(reply.node_id, reply.head_epoch);
            st.logger->info("joined as node {}: group {} stage {} (head epoch {})", reply.node_id, reply.group_id,
                            reply.stage_index, reply.head_epoch);
            self->delayed_send(self, st.options.heartbeat_interval, beat_atom::value, session);
            self->become(joined(self));
          },
          [self, session](caf::error& error) {
            if (session == self->state.session) lose_head(self, "join failed: " + self->system().render(error));
          });
  self->become(joining(self));
}

void connect(AgentActor* self) {
  auto& s = self->state;
  const uint64_t session = s.session;
  // With control-plane TLS (CAF's openssl module loaded) the head is reached through its manager.
  auto& system = self->system();
  auto middleman = system.has_openssl_manager() ? system.openssl_manager().actor_handle()
                                                : system.middleman().actor_handle();
  self->request(middleman, s.options.heartbeat_timeout, caf::connect_atom::value, s.options.head.host,
                s.options.head.port)
      .then(
          [self, session](const caf::node_id&, caf::strong_actor_ptr& remote, const std::set<std::string>&) {
            auto& st = self->state;
            if (session != st.session || st.head) return;
            st.options.status->pulse();
            if (!remote) {
              st.logger->warn("nothing published at {}; retrying", st.options.head.to_string());
              retry_connect(self);
              return;
            }
            st.head = caf::actor_cast<caf::actor>(remote);
            self->monitor(st.head);
            st.num_failed_connects = 0;
            st.logger->info("connected to the head at {}", st.options.head.to_string());
            send_join(self);
          },
          [self, session](caf::error& error) {
            auto& st = self->state;
            if (session != st.session) return;
            st.options.status->pulse();
            if (st.num_failed_connects++ % 10 == 0)
              st.logger->info("head at {} not reachable yet ({}); retrying", st.options.head.to_string(),
                              self->system().render(error));
            retry_connect(self);
          });
}

void beat(AgentActor* self, uint64_t session) {
  auto& s = self->state;
  if (session != s.session || !s.head || s.node_id == 0) return;
  heartbeat beat_msg;
  beat_msg.node_id = s.node_id;
  if (s.host && s.wired && s.host->engine() != nullptr) {  // a group leader reports its engine's load
    const EngineStats load = s.host->engine()->stats();
    beat_msg.num_kv_blocks_used = load.num_kv_blocks_used;
    beat_msg.num_kv_blocks_total = load.num_kv_blocks_total;
    beat_msg.num_preemptions_total = load.num_preemptions_total;
    beat_msg.iteration_tokens_counts.assign(load.iteration_tokens_counts.begin(), load.iteration_tokens_counts.end());
    beat_msg.iteration_tokens_sum = load.iteration_tokens_sum;
  }
  self->request(s.head, s.options.heartbeat_timeout, beat_msg)
      .then(
          [self, session](const heartbeat_ack& ack) {
            auto& st = self->state;
            if (session != st.session) return;
            if (!ack.known || ack.head_epoch != st.head_epoch) {
              if (ack.known)
                st.logger->warn("the head restarted (epoch {} -> {}); joining again", st.head_epoch, ack.head_epoch);
              else
                st.logger->warn("the head declared node {} lost; joining again", st.node_id);
              stop_work(self, "declared lost");
              st.assignment = Assignment{};
              st.node_id = 0;
              ++st.session;
              send_join(self);
              return;
            }
            st.options.status->pulse();
            self->delayed_send(self, st.options.heartbeat_interval, beat_atom::value, session);
          },
          [self, session](caf::error& error) {
            if (session == self->state.session)
              lose_head(self, "heartbeat unanswered: " + self->system().render(error));
          });
}

// joined / running: a new group epoch for this node starts (or restarts) its stage.
void on_start_group(AgentActor* self, const start_group& start) {
  auto& s = self->state;
  if (s.node_id == 0 || (start.group_id == s.assignment.group_id && start.epoch <= s.assignment.epoch)) return;
  s.assignment = Assignment{start.group_id, start.stage_index, start.epoch, true};
  s.logger->info("starting stage {} of group {}, epoch {}", start.stage_index, start.group_id, start.epoch);
  s.options.status->loading(start.group_id, start.stage_index, start.epoch);
  start_stage(self, start);
  self->become(running(self));
}

// What may still arrive from an earlier state or session (timers, stage helpers, the head's
// messages in flight): ignored, or for a request, answered with an error. NOTE: handled, not left
// to a default handler: CAF 0.17 answers an unhandled message with an error, and one from this
// actor's own timer would stop it.
caf::message_handler late_messages(AgentActor* self) {
  return {
      [](connect_now_atom, uint64_t) {},
      [](beat_atom, uint64_t) {},
      [](const start_group&) {},
      [](prepared_atom, uint64_t, const std::string&) {},
      [](const wire_group&) {},
      [](wired_atom, uint64_t, const std::string&) {},
      [](const stage_failed&) {},
      [self](generate_request& request) { generate(self, request); },  // answers "does not lead"
      [](const cancel_generate&) {},
      [](const stop_group&) {},
  };
}

caf::behavior connecting(AgentActor* self) {
  caf::message_handler own{
      [self](connect_now_atom, uint64_t session) {
        if (session == self->state.session && !self->state.head) connect(self);
      },
  };
  return own.or_else(late_messages(self));
}

// The join request is in flight; its reply handler moves on (joined, connecting, or quits).
// The head sends start_group only after its join reply, so nothing of this state's own arrives.
caf::behavior joining(AgentActor* self) { return late_messages(self); }

caf::behavior joined(AgentActor* self) {
  caf::message_handler own{
      [self](beat_atom, uint64_t session) { beat(self, session); },
      [self](const start_group& start) { on_start_group(self, start); },
  };
  return own.or_else(late_messages(self));
}

caf::behavior running(AgentActor* self) {
  caf::message_handler own{
      [self](beat_atom, uint64_t session) { beat(self, session); },
      [self](const start_group& start) { on_start_group(self, start); },
      [self](prepared_atom, uint64_t epoch, const std::string& error) { on_prepared(self, epoch, error); },
      [self](const wire_group& wire) { wire_stage(self, wire); },
      [self](wired_atom, uint64_t epoch, const std::string& error) { on_wired(self, epoch, error); },
      [self](const stage_failed& failed) {  // from this stage's runner thread: to the head, if still current
        auto& st = self->state;
        if (st.head && st.assignment.running && failed.epoch == st.assignment.epoch &&
            failed.group_id == st.assignment.group_id)
          self->send(st.head, failed);
      },
      [self](generate_request& request) { generate(self, request); },
      [self](const cancel_generate& cancel) {
        auto& st = self->state;
        if (cancel.group_id == st.assignment.group_id && cancel.epoch == st.assignment.epoch && st.host &&
            st.host->engine() != nullptr)
          st.host->engine()->cancel(cancel.engine_request_id);
      },
      [self](const stop_group& stop) {
        auto& a = self->state.assignment;
        if (stop.group_id != a.group_id || stop.epoch != a.epoch) return;  // stale
        stop_work(self, stop.reason);
        self->become(joined(self));
      },
  };
  return own.or_else(late_messages(self));
}

caf::behavior agent_behavior(AgentActor* self, AgentOptions options) {
  auto& s = self->state;
  s.options = std::move(options);
  s.backoff = std::make_unique<cluster::Backoff>(s.options.reconnect);
  self->set_down_handler([self](caf::down_msg& down) {
    if (self->state.head && down.source == self->state.head.address())
      lose_head(self, "connection lost: " + self->system().render(down.reason));
  });
  self->send(self, connect_now_atom::value, s.session);
  return connecting(self);
}

}  // namespace

caf::actor spawn_node_agent(caf::actor_system& system, AgentOptions options) {
  return system.spawn(agent_behavior, std::move(options));
}

}  // namespace troupe
