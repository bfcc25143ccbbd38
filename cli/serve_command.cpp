// `troupe serve`: the engine and the OpenAI-compatible HTTP API in one process.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "cli/commands.hpp"
#include "pipeline/local_pipeline.hpp"
#include "http/generation_config.hpp"
#include "http/hf_text_codec.hpp"
#include "http/server.hpp"
#include "backends/backend_factory.hpp"
#include "backends/build_engine.hpp"
#include "backends/stage_model_factory.hpp"
#include "engine/llm_engine.hpp"
#include "runtime/logging.hpp"

namespace troupe::cli {
namespace {

// SIGINT/SIGTERM land in a handler that only writes the signal's number to a pipe (the one
// async-signal-safe step); a watcher thread reads it and runs the shutdown as ordinary code.
// NOTE: not sigwait(): threads started before run_serve (libraries' pools) would not block the
// signals, and the kernel may hand a signal to any thread that does not block it.
int g_signal_pipe[2] = {-1, -1};

void on_signal(int signal) {
  const unsigned char byte = static_cast<unsigned char>(signal);
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &byte, 1);
}

void install_stop_handlers() {
  if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

// Waits for SIGINT/SIGTERM or `done`; returns the signal number or 0.
int wait_for_stop(const std::atomic<bool>& done) {
  while (!done.load()) {
    pollfd p{g_signal_pipe[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    unsigned char byte = 0;
    if (::read(g_signal_pipe[0], &byte, 1) == 1) return byte;
  }
  return 0;
}

}  // namespace

int run_serve(const Config& given) {
  Config config = given;
  if (config.model.empty())
    return report_error(make_error(ErrorCode::invalid_argument, "a model folder is required (troupe serve MODEL, or --model)"));
  if (config.served_model_name.empty())
    config.served_model_name = std::filesystem::path(config.model).filename().string();

  auto codec = http::HfTextCodec::load(config.model);
  if (!codec.ok()) return report_error(codec.error());
  if (!config.chat_template.empty())
    if (Status replaced = codec.value()->replace_chat_template(config.chat_template); !replaced.ok())
      return report_error(replaced.error());
  if (auto defaults = http::load_generation_defaults(config); !defaults.ok()) return report_error(defaults.error());
  // --pipeline-parallel-size N: N stages in this process, wired over loopback UCX.
  std::unique_ptr<cluster::LocalPipeline> pipeline;
  std::unique_ptr<LlmEngine> single;
  LlmEngine* engine = nullptr;
  if (config.pipeline_parallel_size > 1) {
    auto started = cluster::LocalPipeline::start(
        config, [](const Config& c) { return backends::make_backend(c); }, backends::load_stage_model);
    if (!started.ok()) return report_error(started.error());
    pipeline = std::move(started.value());
    engine = &pipeline->engine();
  } else {
    auto created = backends::build_engine(config);
    if (!created.ok()) return report_error(created.error());
    single = std::move(created.value());
    single->start();
    engine = single.get();
  }
  config.max_model_len = engine->max_model_len();

  http::Server server(config, engine, codec.value());
  if (Status status = server.bind(); !status.ok()) return report_error(status.error());
  // Lifecycle: SIGTERM/SIGINT -> drain (503 to new work, in-flight requests finish or are aborted
  // at --shutdown-timeout) -> the HTTP server stops -> the engine stops -> exit 0.
  std::atomic<bool> done{false};
  install_stop_handlers();
  std::thread watcher([&] {
    const int signal = wait_for_stop(done);
    if (signal == 0) return;
    log::get("http")->info("{}: shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    const auto timeout = std::chrono::duration<double>(config.shutdown_timeout_s);
    server.drain(std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
    server.stop();
  });
  log::get("http")->info("serving {} as '{}'", config.model, config.served_model_name);
  server.listen();
  done = true;
  watcher.join();
  engine->stop();
  log::get("http")->info("stopped");
  return 0;
}

}  // namespace troupe::cli
