#include "http/server.hpp"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "runtime/logging.hpp"
#include "runtime/version.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

json error_body(const std::string& message, const std::string& type, int code) {
  return json{{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

}  // namespace

Server::Server(Config config) : config_(std::move(config)), server_(std::make_unique<httplib::Server>()) {
  register_routes();
}

Server::~Server() = default;

void Server::register_routes() {
  auto& s = *server_;
  s.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
  s.Get("/version", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, json{{"version", kVersion}});
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json model{{"id", config_.served_model_name}, {"object", "model"}, {"owned_by", "troupe"}};
    send_json(res, 200, json{{"object", "list"}, {"data", json::array({model})}});
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) send_json(res, 404, error_body("route not found: " + req.path, "NotFoundError", 404));
  });
}

Status Server::bind() {
  if (!server_->bind_to_port(config_.host, int(config_.http_port)))
    return make_error(ErrorCode::unavailable,
                      "cannot listen on " + config_.host + ":" + std::to_string(config_.http_port) +
                          " (address in use or not permitted)");
  port_ = int(config_.http_port);
  log::get("http")->info("listening on http://{}:{}", config_.host, port_);
  return Status::success();
}

void Server::listen() { server_->listen_after_bind(); }

void Server::stop() { server_->stop(); }

}  // namespace troupe::http
