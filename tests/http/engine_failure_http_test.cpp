// The error boundary as a client sees it: the real engine (CPU) over a FaultInjectingBackend
// behind the HTTP server. Once the device fails, the request in flight gets an error, /health
// answers 503 with the reason, /metrics shows troupe:engine_failed 1, later requests get 503.
#include <httplib.h>

#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backends/build_engine.hpp"
#include "backends/cpu_backend.hpp"
#include "backends/fault_injecting_backend.hpp"
#include "http/hf_text_codec.hpp"
#include "http/server.hpp"

namespace troupe::testing {
namespace {

using nlohmann::json;

const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

json completion(int64_t max_tokens) {
  return json{{"model", "tiny"}, {"prompt", "Once upon a time"}, {"max_tokens", max_tokens},
              {"temperature", 0},  {"ignore_eos", true}};
}

TEST(HttpEngineFailure, HealthAnswers503WithTheReasonAfterADeviceFault) {
  Config config;
  config.model = kModel;
  config.served_model_name = "tiny";
  config.http_port = 0;
  config.num_threads = 2;
  config.num_kv_blocks = 64;
  auto backend = std::make_unique<backends::FaultInjectingBackend>(std::make_unique<CpuBackend>(2));
  backends::FaultInjectingBackend* device = backend.get();
  auto engine = backends::build_engine(config, std::move(backend));
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  (*engine)->start();
  auto codec = http::HfTextCodec::load(kModel);
  ASSERT_TRUE(codec.ok()) << codec.error().message;
  http::Server server(config, engine->get(), codec.value());
  ASSERT_TRUE(server.bind().ok());
  std::thread listener([&] { server.listen(); });
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(60, 0);

  ASSERT_EQ(c.Get("/health")->status, 200);
  auto healthy = c.Post("/v1/completions", completion(2).dump(), "application/json");
  ASSERT_TRUE(healthy);
  EXPECT_EQ(healthy->status, 200) << healthy->body;

  device->arm({backends::FaultSpec::Kind::op, 30});
  auto failed = c.Post("/v1/completions", completion(64).dump(), "application/json");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 500) << failed->body;

  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  const std::string reason = json::parse(health->body)["error"]["message"];
  EXPECT_NE(reason.find("the engine failed"), std::string::npos) << reason;
  EXPECT_NE(reason.find("injected device fault (op 30)"), std::string::npos) << reason;
  auto live = c.Get("/live");  // a failed engine stays failed: liveness asks for a restart
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 503);

  const std::string metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("troupe:engine_failed{model_name=\"tiny\"} 1"), std::string::npos) << metrics;

  auto refused = c.Post("/v1/completions", completion(2).dump(), "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_NE(refused->body.find("the engine failed"), std::string::npos) << refused->body;

  server.stop();
  listener.join();
  (*engine)->stop();
}

}  // namespace
}  // namespace troupe::testing
