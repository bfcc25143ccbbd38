// A whole two-stage pipeline with --stage-transport nccl on the CPU: LocalPipeline's stages run
// on FakeGpuStageBackends whose NCCL link ends meet only through the unique ids the stages made
// and passed in the wiring. Greedy ids equal the host transport's (the same stages over UCX),
// with steps in flight; a link that fails on the last stage breaks the first stage's requests at
// once; two stages on one GPU and a CPU stage are refused before any communicator is made.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "backends/cpu_backend.hpp"
#include "pipeline/local_pipeline.hpp"
#include "tests/unit/fake_gpu_stage_backend.hpp"
#include "tests/unit/greedy_request.hpp"
#include "tests/unit/output_collector.hpp"

namespace troupe {
namespace {

using testing::greedy;
using Collector = testing::OutputCollector;

const std::string kLlama = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

Config two_stage_config(const std::string& transport) {
  Config config;
  config.model = kLlama;
  config.num_threads = 1;
  config.num_kv_blocks = 128;
  config.block_size = 4;
  config.pipeline_parallel_size = 2;
  config.stage_transport = transport;
  return config;
}

// Stage k computes on fake GPU `first_device` (LocalPipeline places stage k at k), or all on one.
Result<std::unique_ptr<cluster::LocalPipeline>> start(const std::string& transport,
                                                       std::shared_ptr<FakeGpuCluster> gpus, bool one_gpu = false) {
  return cluster::LocalPipeline::start(
      two_stage_config(transport),
      [gpus, one_gpu](const Config& c) -> Result<std::unique_ptr<Backend>> {
        const std::string device = "test-host/pci:0000:" + std::to_string(one_gpu ? 0 : c.first_device);
        return std::unique_ptr<Backend>(std::make_unique<FakeGpuStageBackend>(gpus, device));
      });
}

const std::vector<std::vector<int32_t>> kPrompts = {{200}, {109, 138, 192, 176, 84}, {5, 6, 7}, {42, 43, 44, 45}};

// Every prompt at once (steps of several sequences, two in flight), then the ids of each.
std::vector<std::vector<int32_t>> generate(ServingEngine& engine, const std::string& tag) {
  Collector c;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    const std::string id = tag + std::to_string(i);
    EXPECT_TRUE(engine.submit(greedy(id, kPrompts[i], 20), c.callback(id)).ok());
  }
  EXPECT_TRUE(c.wait_all(kPrompts.size()));
  std::vector<std::vector<int32_t>> ids;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    const std::string id = tag + std::to_string(i);
    EXPECT_EQ(c.finish[id], "length") << id << ": " << c.errors[id];
    ids.push_back(c.tokens[id]);
  }
  return ids;
}

TEST(NcclPipeline, GreedyIdsEqualTheHostTransportsWithStepsInFlight) {
  auto host_gpus = std::make_shared<FakeGpuCluster>();
  auto host = start("host", host_gpus);
  ASSERT_TRUE(host.ok()) << host.error().message;
  const auto want = generate(host.value()->engine(), "h");
  host.value().reset();
  EXPECT_EQ(host_gpus->network->num_ids.load(), 0) << "the host transport makes no NCCL id";

  auto gpus = std::make_shared<FakeGpuCluster>();
  auto nccl = start("nccl", gpus);
  ASSERT_TRUE(nccl.ok()) << nccl.error().message;
  EXPECT_EQ(gpus->network->num_ids.load(), 2) << "one id per link: stage 0 -> 1 and 1 -> 0";
  ASSERT_EQ(gpus->counters.size(), 4u) << "each stage: the end it sends on and the one it receives on";
  for (const auto& c : gpus->counters) EXPECT_EQ(c->inits.load(), 1);
  // Ends joined by the id their sender made: stage 0's sending end and stage 1's receiving end.
  EXPECT_EQ(gpus->counters[0]->last_id, gpus->counters[3]->last_id);
  EXPECT_EQ(gpus->counters[2]->last_id, gpus->counters[1]->last_id);
  EXPECT_NE(gpus->counters[0]->last_id, gpus->counters[2]->last_id);

  const auto got = generate(nccl.value()->engine(), "n");
  for (size_t i = 0; i < kPrompts.size(); ++i) EXPECT_EQ(got[i], want[i]) << "prompt " << i;
  EXPECT_GT(gpus->counters[0]->sends.load(), 20) << "the steps went over the links";
  EXPECT_GT(gpus->counters[2]->sends.load(), 20) << "the logits came back over the links";
  nccl.value().reset();
  for (const auto& c : gpus->counters) EXPECT_EQ(c->aborts.load(), 1) << "stopping aborts every communicator";
}

TEST(NcclPipeline, ALinkThatFailsOnTheLastStageBreaksTheFirstStagesRequestsAtOnce) {
  auto gpus = std::make_shared<FakeGpuCluster>();
  auto nccl = start("nccl", gpus);
  ASSERT_TRUE(nccl.ok()) << nccl.error().message;
  gpus->ops[2]->transfers_fail = true;  // stage 1's end toward stage 0 (the logits)
  Collector c;
  const auto began = std::chrono::steady_clock::now();
  ASSERT_TRUE(nccl.value()->engine().submit(greedy("x", {1, 2, 3}, 8), c.callback("x")).ok());
  ASSERT_TRUE(c.wait_all(1, std::chrono::seconds(20))) << "the request hung on a dead link";
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(10)) << "not the 120 s step timeout";
  EXPECT_EQ(c.finish["x"], "error");
  EXPECT_NE(c.errors["x"].find("pipeline broken"), std::string::npos) << c.errors["x"];
  EXPECT_EQ(gpus->counters[2]->aborts.load(), 1) << "the failed link's communicator is aborted";
}

TEST(NcclPipeline, ALinkThatFailsOnTheFirstStageAbortsBothOfItsLinks) {
  auto gpus = std::make_shared<FakeGpuCluster>();
  auto nccl = start("nccl", gpus);
  ASSERT_TRUE(nccl.ok()) << nccl.error().message;
  gpus->ops[0]->transfers_fail = true;  // stage 0's end toward stage 1 (the steps)
  Collector c;
  ASSERT_TRUE(nccl.value()->engine().submit(greedy("y", {4, 5, 6}, 8), c.callback("y")).ok());
  ASSERT_TRUE(c.wait_all(1, std::chrono::seconds(20))) << "the request hung on a dead link";
  EXPECT_EQ(c.finish["y"], "error");
  EXPECT_NE(c.errors["y"].find("pipeline broken"), std::string::npos) << c.errors["y"];
  EXPECT_EQ(gpus->counters[0]->aborts.load(), 1) << "the failed link";
  // The logits link too, while the pipeline still lives: its receiver thread waits inside NCCL
  // for a step that was never sent, and only an abort wakes it (not the 120 s step timeout). The
  // receiver's own thread calls ncclCommAbort, within a poll.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (gpus->counters[1]->aborts.load() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(gpus->counters[1]->aborts.load(), 1);
}

TEST(NcclPipeline, TwoStagesOnOneGpuAreRefusedBeforeAnyCommunicator) {
  auto gpus = std::make_shared<FakeGpuCluster>();
  auto refused = start("nccl", gpus, /*one_gpu=*/true);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(refused.error().message.find("stages 0 and 1 share GPU"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("/test-host/pci:0000:0"), std::string::npos) << "<host>/<device id>";
  for (const auto& c : gpus->counters) EXPECT_EQ(c->inits.load(), 0) << "no ncclCommInitRank was started";
}

TEST(NcclPipeline, ACpuStageIsRefusedWithTheFlagToUse) {
  auto refused = cluster::LocalPipeline::start(two_stage_config("nccl"), [](const Config& c) -> Result<std::unique_ptr<Backend>> {
    return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(c.num_threads));
  });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::unsupported);
  EXPECT_NE(refused.error().message.find("needs a GPU backend"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("--stage-transport host"), std::string::npos) << refused.error().message;
}

}  // namespace
}  // namespace troupe
