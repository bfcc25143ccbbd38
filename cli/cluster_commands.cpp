// `troupe head` and `troupe worker`: the actor cluster when troupe_actors is built, else an error.
// The head serves the OpenAI API (cluster mode) on --http-port when --model is given.
#include "cli/commands.hpp"

#ifdef TROUPE_HAVE_ACTORS
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include "actors/cluster_main.hpp"
#include "cli/worker_health_server.hpp"
#include "http/hf_text_codec.hpp"
#include "http/server.hpp"
#include "backends/backend_factory.hpp"
#include "backends/stage_model_factory.hpp"
#include "runtime/logging.hpp"
#include "http/generation_config.hpp"
#endif

namespace troupe::cli {

#ifdef TROUPE_HAVE_ACTORS
int run_head(const Config& given) {
  Config config = given;
  if (!config.model.empty() && config.served_model_name.empty())
    config.served_model_name = std::filesystem::path(config.model).filename().string();
  std::shared_ptr<http::HfTextCodec> codec;
  if (!config.model.empty()) {
    auto loaded = http::HfTextCodec::load(config.model);
    if (!loaded.ok()) return report_error(loaded.error());
    codec = std::move(loaded.value());
    if (!config.chat_template.empty())
      if (Status replaced = codec->replace_chat_template(config.chat_template); !replaced.ok())
        return report_error(replaced.error());
    if (auto defaults = http::load_generation_defaults(config); !defaults.ok()) return report_error(defaults.error());
  }
  std::unique_ptr<http::Server> server;
  std::thread listener;
  HeadServices services;
  services.start = [&](ServingEngine& engine) -> Status {
    Config http_config = config;
    http_config.max_model_len = engine.max_model_len();
    server = std::make_unique<http::Server>(http_config, &engine, codec);
    TROUPE_TRY(server->bind());
    log::get("http")->info("serving {} as '{}' through the cluster", config.model, config.served_model_name);
    listener = std::thread([&] { server->listen(); });
    return Status::success();
  };
  // SIGTERM/SIGINT: the HTTP server drains first (503 to new work, requests in flight get
  // --shutdown-timeout seconds through the still running cluster), then the head stops.
  services.stop = [&] {
    if (server) {
      const auto timeout = std::chrono::duration<double>(config.shutdown_timeout_s);
      server->drain(std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
      server->stop();
    }
    if (listener.joinable()) listener.join();
  };
  return run_head_node(config, services);
}

int run_worker(const Config& config) {
  WorkerServices services;
  std::unique_ptr<WorkerHealthServer> health;
  if (config.worker_health_port >= 0) {
    // A pulse older than three heartbeat timeouts (at least 15 s) means a hung node agent.
    const auto stale_after = std::max(std::chrono::milliseconds(15000), 3 * std::chrono::milliseconds(config.heartbeat_timeout_ms));
    services.start = [&config, &health, stale_after](std::shared_ptr<const cluster::WorkerStatus> status) -> Status {
      health = std::make_unique<WorkerHealthServer>(std::move(status), config.metrics_prefix, stale_after);
      TROUPE_TRY(health->start(config.host, static_cast<int>(config.worker_health_port)));
      log::get("cluster")->info("worker health on http://{}:{} (/live, /health, /metrics)", config.host, health->port());
      return Status::success();
    };
    services.stop = [&] { health.reset(); };
  }
  return run_worker_node(
      config, [](const Config& c) { return backends::make_backend(c); }, backends::load_stage_model, services);
}
#else
int run_head(const Config&) {
  return report_error(make_error(ErrorCode::unsupported, "`troupe head`: this build has no actor cluster"));
}
int run_worker(const Config&) {
  return report_error(make_error(ErrorCode::unsupported, "`troupe worker`: this build has no actor cluster"));
}
#endif

}  // namespace troupe::cli
