#pragma once
// The OpenAI-compatible HTTP server (cpp-httplib). Routes are registered one per line in
// server.cpp; every handler's errors are mapped to the OpenAI error shape in one place.
#include <atomic>
#include <memory>
#include <string>

#include "runtime/config.hpp"
#include "runtime/result.hpp"

namespace httplib {
class Server;
}

namespace troupe::http {

class Server {
 public:
  explicit Server(Config config);
  ~Server();

  // Binds host:port; an error names the address when it is taken.
  Status bind();
  // Serves until stop() is called (from another thread or a signal handler).
  void listen();
  void stop();
  int port() const { return port_; }

 private:
  void register_routes();

  Config config_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
};

}  // namespace troupe::http
