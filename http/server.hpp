#pragma once
// The OpenAI-compatible HTTP server (cpp-httplib). Routes are registered one per line in
// server.cpp; every handler's errors are mapped to the OpenAI error shape in one place.
#include <chrono>
#include <memory>
#include <string>

#include "runtime/config.hpp"
#include "runtime/result.hpp"
#include "engine/serving_engine.hpp"

namespace httplib {
class Server;
}

namespace troupe::http {

class CorsPolicy;
class Routes;
class TextCodec;

class Server {
 public:
  // No engine: /health and generation answer 503 (for `troupe serve` before the engine is wired).
  explicit Server(Config config);
  // engine: must outlive the server. codec: the model's tokenizer + chat template
  // (HfTextCodec::load(model_dir) in http/hf_text_codec.hpp).
  Server(Config config, ServingEngine* engine, std::shared_ptr<const TextCodec> codec);
  ~Server();

  // Binds host:http_port (0: an ephemeral port, see port()); an error names the address, or the
  // TLS files when they cannot be used (--ssl-certfile / --ssl-keyfile / --ssl-ca-certs).
  Status bind();
  // Serves until stop() is called (from another thread or a signal handler).
  void listen();
  void stop();
  // The graceful half of a shutdown (SIGTERM): /health and new generation requests answer 503
  // (Retry-After) at once; requests in flight run to their end for up to `timeout`, then the rest
  // are aborted (finish_reason "abort", streams still end with [DONE]) and given a short grace to
  // write it. Returns true when every request ended on its own. Call stop() afterwards.
  bool drain(std::chrono::milliseconds timeout);
  int port() const { return port_; }
  // True once listen() accepts connections.
  bool is_running() const;

 private:
  void register_routes();
  void register_cors();

  Config config_;
  std::shared_ptr<const CorsPolicy> cors_;
  std::unique_ptr<Routes> routes_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
};

}  // namespace troupe::http
