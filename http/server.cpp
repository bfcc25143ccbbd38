#include "http/server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <httplib.h>

#include <algorithm>
#include <exception>

#include "http/auth.hpp"
#include "http/connection_pool.hpp"
#include "http/cors.hpp"
#include "http/request_log.hpp"
#include "http/routes.hpp"
#include "http/text_codec.hpp"
#include "runtime/logging.hpp"

namespace troupe::http {
namespace {

using Handler = void (Routes::*)(const httplib::Request&, httplib::Response&);

// Open connections served at once; more wait for a thread (each also takes a file descriptor:
// raise_open_file_limit() lifts the soft limit to the hard one).
constexpr size_t kMaxHttpThreads = 4096;

// Thousands of connections need as many descriptors; a soft limit of 1024 is common.
void raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
}

bool authorized(const Config& config, const httplib::Request& req) {
  return is_authorized(req.get_header_value("Authorization"), config.api_key);
}

ApiError unauthorized() { return ApiError{401, "missing or wrong API key (Authorization: Bearer <key>)", ""}; }

// HTTPS when a certificate is configured (Debian's httplib is built with OpenSSL); with a CA file,
// a client must present a certificate it signed (SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
std::unique_ptr<httplib::Server> make_server(const Config& config) {
  if (config.ssl_certfile.empty()) return std::make_unique<httplib::Server>();
  return std::make_unique<httplib::SSLServer>(config.ssl_certfile.c_str(), config.ssl_keyfile.c_str(),
                                              config.ssl_ca_certs.empty() ? nullptr : config.ssl_ca_certs.c_str());
}

}  // namespace

Server::Server(Config config) : Server(std::move(config), nullptr, nullptr) {}

Server::Server(Config config, ServingEngine* engine, std::shared_ptr<const TextCodec> codec)
    : config_(std::move(config)),
      cors_(std::make_shared<const CorsPolicy>(config_.allowed_origins)),
      routes_(std::make_unique<Routes>(config_, engine, std::move(codec))),
      server_(make_server(config_)) {
  register_routes();
}

Server::~Server() {
  routes_->stop();
  server_->stop();
}

void Server::register_routes() {
  auto& s = *server_;
  Routes* routes = routes_.get();
  const Config* config = &config_;
  // Every route but /health and /metrics checks the API key (--protect-metrics: /metrics too, as
  // vLLM leaves both open); handlers never let an exception out.
  auto guarded = [routes, config](Handler handler, bool needs_auth) {
    return [routes, config, handler, needs_auth](const httplib::Request& req, httplib::Response& res) {
      if (needs_auth && !authorized(*config, req)) return send_error(res, unauthorized());
      try {
        (routes->*handler)(req, res);
      } catch (const std::exception& e) {
        send_error(res, ApiError{500, std::string("internal error: ") + e.what(), ""});
      }
    };
  };
  // --root-path /p: every route also answers under /p (a proxy that forwards the prefix as is).
  const std::string root = config_.root_path;
  auto get = [&s, &root](const std::string& path, httplib::Server::Handler handler) {
    if (!root.empty()) s.Get(root + path, handler);
    s.Get(path, std::move(handler));
  };
  auto post = [&s, &root](const std::string& path, httplib::Server::Handler handler) {
    if (!root.empty()) s.Post(root + path, handler);
    s.Post(path, std::move(handler));
  };
  get("/health", guarded(&Routes::health, false));
  get("/live", guarded(&Routes::live, false));
  get("/version", guarded(&Routes::version, true));
  get("/v1/models", guarded(&Routes::models, true));
  get("/ping", guarded(&Routes::ping, false));
  post("/ping", guarded(&Routes::ping, false));
  get("/metrics", guarded(&Routes::metrics, config_.protect_metrics));
  post("/v1/chat/completions", guarded(&Routes::chat_completions, true));
  post("/v1/completions", guarded(&Routes::completions, true));
  post("/v1/responses", guarded(&Routes::responses, true));
  post("/tokenize", guarded(&Routes::tokenize, true));
  post("/detokenize", guarded(&Routes::detokenize, true));
  register_cors();

  // NOTE: a connection holds one HTTP thread for its whole life (a stream, an idle keep-alive, a
  // client trickling its headers); httplib's fixed pool would queue every client behind a few
  // thousand idle sockets, so the pool grows a thread per connection up to kMaxHttpThreads.
  size_t num_threads = size_t(std::clamp<int64_t>(config_.max_num_seqs + 16, 32, 1024));
  s.new_task_queue = [num_threads] { return new ConnectionPool(num_threads, kMaxHttpThreads); };
  // NOTE: httplib 0.11 waits for a connection's next request by polling it every ~10 ms, so an idle
  // socket costs CPU until its keep-alive timeout: 2 s (httplib's 5) bounds what idle sockets cost.
  s.set_keep_alive_timeout(2);
  s.set_payload_max_length(size_t(config_.max_body_bytes));
  // NOTE: httplib enforces the limit only while reading the body (after its read timeout when a
  // client announces more than it sends): refuse an announced oversized body from its headers,
  // and close the connection instead of reading the body.
  s.set_pre_routing_handler([config](const httplib::Request& req, httplib::Response& res) {
    const std::string length = req.get_header_value("Content-Length");
    if (length.empty() || length.size() > 19 || length.find_first_not_of("0123456789") != std::string::npos ||
        std::stoll(length) <= config->max_body_bytes)
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError{413, "request body larger than " + std::to_string(config->max_body_bytes) + " bytes", ""});
    res.set_header("Connection", "close");
    return httplib::Server::HandlerResponse::Handled;
  });
  s.set_tcp_nodelay(true);  // SSE chunks are small: no Nagle delay per token
  // Statuses set by httplib itself (no route, body too large, bad request line) get a JSON body.
  s.set_error_handler(httplib::Server::HandlerWithResponse([config](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 404 && !authorized(*config, req)) {
      send_error(res, unauthorized());
    } else if (res.status == 404) {
      send_error(res, ApiError{404, "route not found: " + req.method + " " + req.path, ""});
    } else if (res.status == 413) {
      send_error(res, ApiError{413, "request body larger than " + std::to_string(config->max_body_bytes) + " bytes", ""});
    } else {
      send_error(res, ApiError{res.status, "request failed with HTTP status " + std::to_string(res.status), ""});
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  // A client's X-Request-Id comes back on every answer (generation routes set it themselves);
  // an allowed Origin gets the CORS headers on every answer, errors included.
  s.set_post_routing_handler([cors = cors_](const httplib::Request& req, httplib::Response& res) {
    if (!res.has_header("X-Request-Id") && is_acceptable_request_id(req.get_header_value("X-Request-Id")))
      res.set_header("X-Request-Id", req.get_header_value("X-Request-Id"));
    const std::string origin = req.get_header_value("Origin");
    if (cors->allows(origin) && !res.has_header("Access-Control-Allow-Origin")) {
      res.set_header("Access-Control-Allow-Origin", cors->allow_origin_value(origin));
      res.set_header("Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
      if (cors->allow_origin_value(origin) != "*") res.set_header("Vary", "Origin");
    }
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, ApiError{500, "internal error", ""});
  });
}

void Server::register_cors() {
  if (!cors_->is_enabled()) return;
  // A preflight needs no API key (browsers send none); the answer it gets decides the real request.
  server_->Options(".*", [cors = cors_](const httplib::Request& req, httplib::Response& res) {
    const std::string origin = req.get_header_value("Origin");
    if (!cors->allows(origin)) {
      send_error(res, ApiError{400, "CORS: origin '" + origin + "' is not allowed (--allowed-origins)", ""});
      return;
    }
    res.status = 204;
    res.set_header("Access-Control-Allow-Origin", cors->allow_origin_value(origin));
    res.set_header("Access-Control-Allow-Methods", CorsPolicy::allow_methods);
    const std::string asked = req.get_header_value("Access-Control-Request-Headers");
    res.set_header("Access-Control-Allow-Headers", asked.empty() ? CorsPolicy::default_allow_headers : asked);
    res.set_header("Access-Control-Max-Age", CorsPolicy::max_age_seconds);
    if (cors->allow_origin_value(origin) != "*") res.set_header("Vary", "Origin");
  });
}

namespace {

// Debian's cpp-httplib is a compiled library whose listen backlog is fixed at 5, so a burst of
// new connections (64 clients at once) overflows the accept queue and some are dropped. Linux
// lets listen() be called again on a listening socket to raise the backlog: find ours by port.
void widen_listen_backlog(int port) {
  for (int fd = 3; fd < 4096; ++fd) {
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) continue;
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) continue;
    const int bound = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                                 : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (bound == port) ::listen(fd, 4096);
  }
}

}  // namespace

Status Server::bind() {
  if (!server_->is_valid())
    return make_error(ErrorCode::invalid_argument,
                      "TLS: cannot use --ssl-certfile " + config_.ssl_certfile + " with --ssl-keyfile " +
                          config_.ssl_keyfile +
                          (config_.ssl_ca_certs.empty() ? "" : " and --ssl-ca-certs " + config_.ssl_ca_certs) +
                          " (missing, unreadable, not PEM, or the key does not match the certificate)");
  bool ok = false;
  if (config_.http_port == 0) {
    port_ = server_->bind_to_any_port(config_.host);
    ok = port_ > 0;
  } else {
    ok = server_->bind_to_port(config_.host, int(config_.http_port));
    port_ = int(config_.http_port);
  }
  if (!ok)
    return make_error(ErrorCode::unavailable, "cannot listen on " + config_.host + ":" +
                                                  std::to_string(config_.http_port) +
                                                  " (address in use or not permitted)");
  widen_listen_backlog(port_);
  raise_open_file_limit();
  log::get("http")->info("listening on {}://{}:{}{}{}", config_.ssl_certfile.empty() ? "http" : "https", config_.host,
                         port_, config_.root_path, config_.ssl_ca_certs.empty() ? "" : " (client certificates required)");
  return Status::success();
}

void Server::listen() { server_->listen_after_bind(); }

bool Server::is_running() const { return server_->is_running(); }

bool Server::drain(std::chrono::milliseconds timeout) {
  AdmissionGate& gate = routes_->gate();
  gate.begin_drain();
  auto logger = log::get("http");
  logger->info("draining: {} requests in flight, {} ms to finish", gate.num_in_flight(), timeout.count());
  if (gate.wait_until_idle(timeout)) return true;
  logger->warn("shutdown timeout: aborting {} requests", gate.num_in_flight());
  gate.abort_all();
  // NOTE: an aborted request ends within one engine step and one poll; a client that does not read
  // is bounded by httplib's write timeout, then stop() drops what is left.
  if (!gate.wait_until_idle(std::chrono::seconds(5))) logger->warn("{} requests did not end", gate.num_in_flight());
  return false;
}

void Server::stop() {
  routes_->stop();
  server_->stop();
}

}  // namespace troupe::http
