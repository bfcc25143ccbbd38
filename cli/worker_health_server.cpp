#include "cli/worker_health_server.hpp"

#include <httplib.h>

namespace troupe::cli {

WorkerHealthServer::WorkerHealthServer(std::shared_ptr<const cluster::WorkerStatus> status, std::string metrics_prefix,
                                       std::chrono::milliseconds stale_after)
    : status_(std::move(status)), metrics_prefix_(std::move(metrics_prefix)), stale_after_(stale_after) {}

WorkerHealthServer::~WorkerHealthServer() { stop(); }

Status WorkerHealthServer::start(const std::string& host, int port) {
  server_ = std::make_unique<httplib::Server>();
  server_->Get("/live", [this](const httplib::Request&, httplib::Response& res) {
    const cluster::WorkerSnapshot s = status_->snapshot();
    const bool alive = std::chrono::steady_clock::now() - s.last_pulse < stale_after_;
    res.status = alive ? 200 : 503;
    res.set_content(cluster::worker_health_json(s), "application/json");
  });
  server_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const cluster::WorkerSnapshot s = status_->snapshot();
    res.status = s.state == "serving" ? 200 : 503;
    res.set_content(cluster::worker_health_json(s), "application/json");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(cluster::worker_metrics_text(status_->snapshot(), metrics_prefix_), "text/plain; version=0.0.4");
  });
  port_ = port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (port_ <= 0)
    return make_error(ErrorCode::unavailable, "--health-port: cannot listen on " + host + ":" + std::to_string(port));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return Status::success();
}

void WorkerHealthServer::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace troupe::cli
