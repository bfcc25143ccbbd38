#include "actors/cluster_main.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <csignal>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include "actors/head_actor.hpp"
#include "actors/head_front_door.hpp"
#include "actors/messages.hpp"
#include "actors/node_agent.hpp"
#include "actors/openssl_error_queue.hpp"
#include "cluster/address.hpp"
#include "cluster/process_supervisor.hpp"
#include "pipeline/stage_plan.hpp"
#include "runtime/logging.hpp"
#include "runtime/model_config.hpp"

namespace troupe {
namespace {

struct Timing {
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds timeout{5000};
};

// The heartbeat timeout is at least two intervals, so one late beat is not a loss.
Timing timing_of(const Config& config) {
  Timing timing;
  timing.interval = std::chrono::milliseconds(config.heartbeat_ms);
  timing.timeout = std::max(std::chrono::milliseconds(config.heartbeat_timeout_ms), 2 * timing.interval);
  return timing;
}

// One line, like the CLI's own errors.
int fail(ErrorCode code, const std::string& message) {
  std::fprintf(stderr, "troupe: error: %s\n", message.c_str());
  return code == ErrorCode::invalid_argument ? cluster::kPermanentExitCode : 1;
}

bool uses_cluster_tls(const Config& config) {
  return !config.cluster_ssl_certfile.empty() || !config.cluster_ssl_keyfile.empty() ||
         !config.cluster_ssl_ca_certs.empty();
}

// All three files or none, each readable: CAF's openssl module would otherwise fall back to
// anonymous ciphers or fail at the first connection, far from the flag that caused it.
Status check_cluster_tls(const Config& config) {
  if (!uses_cluster_tls(config)) return Status::success();
  const std::pair<const char*, const std::string*> files[] = {{"--cluster-ssl-certfile", &config.cluster_ssl_certfile},
                                                              {"--cluster-ssl-keyfile", &config.cluster_ssl_keyfile},
                                                              {"--cluster-ssl-ca-certs", &config.cluster_ssl_ca_certs}};
  for (const auto& [flag, path] : files) {
    if (path->empty())
      return make_error(ErrorCode::invalid_argument,
                        std::string(flag) + " is missing: control-plane TLS needs the certificate, key and CA");
    if (!std::ifstream(*path).good())
      return make_error(ErrorCode::invalid_argument, std::string(flag) + ": cannot read " + *path);
  }
  return Status::success();
}

// CAF settings shared by head and worker. NOTE: BASP heartbeats are off by default in CAF 0.17;
// without them a hung peer (SIGSTOP) keeps its connection open forever.
void configure(caf::actor_system_config& cfg, const Timing& timing, const Config& config) {
  cfg.load<caf::io::middleman>();
  if (uses_cluster_tls(config)) {
    // Mutual TLS: each side presents its certificate and verifies the peer's against the CA.
    cfg.load<caf::openssl::manager>();
    cfg.openssl_certificate = config.cluster_ssl_certfile;
    cfg.openssl_key = config.cluster_ssl_keyfile;
    cfg.openssl_cafile = config.cluster_ssl_ca_certs;
    if (!openssl_error_queue_is_cleared())
      log::get("cluster")->warn("OpenSSL's error queue is not cleared before I/O: one failed handshake can drop "
                                "other joined nodes");
  }
  cfg.add_message_types<caf::id_block::troupe>();
  cfg.set("middleman.heartbeat-interval", caf::timespan{timing.interval});
  cfg.set("middleman.connection-timeout", caf::timespan{timing.timeout});
  cfg.set("scheduler.max-threads", 2);
  cfg.set("logger.console", caf::atom("none"));
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
}

// Signals go to the thread that waits for them; call before the actor system starts its threads.
sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Waits for SIGINT/SIGTERM or `done`; returns the signal number or 0.
int wait_for_stop(const sigset_t& signals, const std::atomic<bool>& done) {
  timespec step{0, 100 * 1000 * 1000};
  while (!done.load()) {
    const int signal = sigtimedwait(&signals, nullptr, &step);
    if (signal > 0) return signal;
  }
  return 0;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

cluster::NodeResources local_resources() {
  cluster::NodeResources resources;
  resources.cpu_cores = std::thread::hardware_concurrency();
  resources.memory_bytes = static_cast<int64_t>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGESIZE);
  resources.num_gpus = 0;  // the GPU worker fills this in once it lands
  return resources;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1" || host == "[::1]";
}

// --advertise-host when given; 127.0.0.1 with a loopback head; else the address of the interface
// that routes to the head (the host name only when that fails: it often resolves to 127.0.0.1).
std::string advertise_host(const Config& config, const cluster::HostPort& head) {
  if (!config.advertise_host.empty()) return config.advertise_host;
  if (is_loopback(head.host)) return "127.0.0.1";
  auto toward_head = cluster::local_address_toward(head);
  if (toward_head.ok()) return toward_head.value();
  const std::string name = host_name();
  log::get("cluster")->warn("{}; advertising the host name {} for the tensor listener (--advertise-host sets it)",
                            toward_head.error().message, name);
  return name;
}

int run_worker_process(const Config& config, const cluster::HostPort& head, const Timing& timing,
                       const cluster::BackendFactory& make_backend, const cluster::ModelFactory& make_model,
                       const WorkerServices& services) {
  const sigset_t signals = block_stop_signals();
  caf::actor_system_config cfg;
  configure(cfg, timing, config);
  caf::actor_system system{cfg};
  AgentOptions options;
  options.head = head;
  options.token = config.token;
  options.host = host_name();
  options.worker_index = config.worker_index;
  options.resources = local_resources();
  options.heartbeat_interval = timing.interval;
  options.heartbeat_timeout = timing.timeout;
  options.local = config;
  options.make_backend = make_backend;
  options.make_model = make_model;
  options.advertise_host = advertise_host(config, head);
  auto exit_code = options.exit_code;
  std::shared_ptr<const cluster::WorkerStatus> status = options.status;
  auto done = std::make_shared<std::atomic<bool>>(false);
  caf::actor agent = spawn_node_agent(system, std::move(options));
  agent->attach_functor([done, &system](const caf::error& reason) {
    if (reason && reason != caf::exit_reason::user_shutdown)
      log::get("cluster")->error("the node agent stopped: {}", system.render(reason));
    done->store(true);
  });
  log::get("cluster")->info("worker pid {} joining the head at {}", ::getpid(), head.to_string());
  if (services.start) {
    Status started = services.start(status);
    if (!started.ok()) {
      caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
      return fail(started.error().code, started.error().message);
    }
  }
  const int signal = wait_for_stop(signals, *done);
  if (signal != 0) log::get("cluster")->info("signal {}: leaving the cluster", signal);
  if (services.stop) services.stop();
  caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
  agent = nullptr;
  return exit_code->load();
}

// The per-stage specs and the request limits of config.model (nothing without a model).
struct ServedModel {
  std::vector<cluster::ModelStageSpec> specs;
  int64_t vocab_size = 0;
  int64_t max_model_len = 0;
};

Result<ServedModel> plan_model(const Config& config) {
  ServedModel served;
  if (config.model.empty()) return served;
  auto model = ModelConfig::load(config.model);
  if (!model.ok()) return model.error();
  auto specs = cluster::plan_stages(config, model->num_hidden_layers);
  if (!specs.ok()) return specs.error();
  served.specs = std::move(specs.value());
  served.vocab_size = model->vocab_size;
  served.max_model_len = config.max_model_len > 0 ? config.max_model_len : model->max_position_embeddings;
  if (model->max_position_embeddings > 0 && served.max_model_len > model->max_position_embeddings)
    return make_error(ErrorCode::invalid_argument, "--max-model-len " + std::to_string(config.max_model_len) +
                                                       " exceeds the model's max_position_embeddings " +
                                                       std::to_string(model->max_position_embeddings));
  return served;
}

}  // namespace

int run_head_node(const Config& config, const HeadServices& services) {
  if (config.token.empty())
    return fail(ErrorCode::invalid_argument, "--token (or TROUPE_TOKEN) is required: workers join with it");
  auto served = plan_model(config);
  if (!served.ok()) return fail(served.error().code, served.error().message);
  if (Status tls = check_cluster_tls(config); !tls.ok()) return fail(tls.error().code, tls.error().message);
  const Timing timing = timing_of(config);
  const sigset_t signals = block_stop_signals();
  caf::actor_system_config cfg;
  configure(cfg, timing, config);
  caf::actor_system system{cfg};
  HeadOptions options;
  options.token = config.token;
  options.num_groups = config.replicas;
  options.group_size = config.pipeline_parallel_size;
  options.heartbeat_interval = timing.interval;
  options.heartbeat_timeout = timing.timeout;
  options.status_file = config.status_file;
  options.stage_specs = served->specs;
  options.router.max_wait = std::chrono::milliseconds(config.request_wait_ms);
  // With a model, the HTTP server's engine is the front door: it and the head talk by messages.
  auto book = std::make_shared<cluster::LiveRequests>();
  if (!served->specs.empty()) options.front_door = spawn_front_door_mailbox(system, book);
  // Microseconds since 1970: a restarted head on the same address gets a different epoch.
  options.head_epoch = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
  caf::actor front_door_mailbox = options.front_door;
  caf::actor head = spawn_head(system, std::move(options));
  auto stop_actors = [&] {
    caf::anon_send_exit(head, caf::exit_reason::user_shutdown);
    if (front_door_mailbox) caf::anon_send_exit(front_door_mailbox, caf::exit_reason::user_shutdown);
  };
  std::unique_ptr<HeadFrontDoor> frontend;
  if (front_door_mailbox)
    frontend = std::make_unique<HeadFrontDoor>(served->vocab_size, served->max_model_len, head, book);
  const auto cluster_port = static_cast<uint16_t>(config.cluster_port);
  auto port = system.has_openssl_manager() ? caf::openssl::publish(head, cluster_port, nullptr, true)
                                           : system.middleman().publish(head, cluster_port, nullptr, true);
  if (!port) {
    stop_actors();
    return fail(ErrorCode::unavailable, "cannot listen on cluster port " + std::to_string(config.cluster_port) +
                                            ": " + system.render(port.error()));
  }
  log::get("cluster")->info("head listening on port {}{}: {} group(s) of {} stage(s), heartbeat {} ms, timeout {} ms",
                            *port, system.has_openssl_manager() ? " (mutual TLS)" : "", config.replicas, config.pipeline_parallel_size, timing.interval.count(),
                            timing.timeout.count());
  if (frontend && services.start) {
    Status started = services.start(*frontend);
    if (!started.ok()) {
      stop_actors();
      return fail(started.error().code, started.error().message);
    }
  }
  std::atomic<bool> never{false};
  const int signal = wait_for_stop(signals, never);
  log::get("cluster")->info("signal {}: head stopping", signal);
  if (frontend && services.stop) services.stop();
  stop_actors();
  head = nullptr;
  front_door_mailbox = nullptr;
  system.await_all_actors_done();
  // NOTE: after the mailbox is gone, so no output reaches a callback while it is failed.
  if (frontend) frontend->close("the head stopped");
  return 0;
}

int run_worker_node(const Config& config, const cluster::BackendFactory& make_backend,
                    const cluster::ModelFactory& make_model, const WorkerServices& services) {
  std::string join = config.join;
  if (join.empty()) join = cluster::lws_join_address(cluster::process_env(), config.cluster_port).value_or("");
  if (join.empty())
    return fail(ErrorCode::invalid_argument, "--join HOST:PORT (or $LWS_LEADER_ADDRESS) is required");
  auto head = cluster::parse_host_port(join);
  if (!head.ok()) return fail(ErrorCode::invalid_argument, "--join: " + head.error().message);
  if (config.token.empty())
    return fail(ErrorCode::invalid_argument, "--token (or TROUPE_TOKEN) is required to join");
  if (Status tls = check_cluster_tls(config); !tls.ok()) return fail(tls.error().code, tls.error().message);
  const Timing timing = timing_of(config);
  if (!config.supervise) return run_worker_process(config, *head, timing, make_backend, make_model, services);
  cluster::SupervisorReport report =
      cluster::supervise_process([&] { return run_worker_process(config, *head, timing, make_backend, make_model, services); }, {});
  return report.exit_code;
}

}  // namespace troupe
