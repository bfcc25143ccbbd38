// `troupe serve`: the engine and the OpenAI-compatible HTTP API in one process.
#include <csignal>
#include <filesystem>

#include "cli/commands.hpp"
#include "pipeline/local_pipeline.hpp"
#include "http/hf_text_codec.hpp"
#include "http/server.hpp"
#include "backends/backend_factory.hpp"
#include "backends/build_engine.hpp"
#include "backends/stage_model_factory.hpp"
#include "engine/llm_engine.hpp"
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
  if (config.model.empty()) return report_error(make_error(ErrorCode::invalid_argument, "--model is required"));
  if (config.served_model_name.empty())
    config.served_model_name = std::filesystem::path(config.model).filename().string();

  auto codec = http::HfTextCodec::load(config.model);
  if (!codec.ok()) return report_error(codec.error());
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
  g_server = &server;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  log::get("http")->info("serving {} as '{}'", config.model, config.served_model_name);
  server.listen();
  g_server = nullptr;
  engine->stop();
  log::get("http")->info("stopped");
  return 0;
}

}  // namespace troupe::cli
