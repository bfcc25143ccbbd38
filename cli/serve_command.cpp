#include <csignal>
#include <filesystem>

#include "cli/commands.hpp"
#include "http/server.hpp"
#include "runtime/logging.hpp"

namespace troupe::cli {
namespace {

http::Server* g_server = nullptr;

void on_signal(int) {
  if (g_server) g_server->stop();
}

}  // namespace

int run_serve(const Config& given) {
  Config config = given;
  if (config.served_model_name.empty())
    config.served_model_name =
        config.model.empty() ? "troupe" : std::filesystem::path(config.model).filename().string();
  http::Server server(config);
  if (Status status = server.bind(); !status.ok()) return report_error(status.error());
  g_server = &server;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  server.listen();
  g_server = nullptr;
  log::get("http")->info("stopped");
  return 0;
}

}  // namespace troupe::cli
