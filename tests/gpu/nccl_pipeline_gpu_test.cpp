// --stage-transport nccl on GPUs: a two-stage LocalPipeline (stage k on GPU k, both in this
// process, as `troupe serve --pp 2` runs it) hands hidden states and logits over NCCL send/recv
// and generates the same greedy ids as the same stages over the host-staged UCX channel, for a
// Llama and a DeepSeek-V3 (MLA + MoE) fixture, every oracle prompt at once (steps in flight).
// Skips unless 2 GPUs are visible (NCCL refuses two ranks on one GPU); with exactly one GPU the
// refusal itself is checked instead. NCCL_NVLS_ENABLE=0 as everywhere troupe launches NCCL.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "backends/backend_factory.hpp"
#include "backends/stage_model_factory.hpp"
#include "models/tensor_parallel.hpp"
#include "pipeline/local_pipeline.hpp"
#include "runtime/model_config.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/unit/fixture_oracle.hpp"
#include "tests/unit/greedy_request.hpp"
#include "tests/unit/output_collector.hpp"

namespace troupe {
namespace {

Result<std::unique_ptr<cluster::LocalPipeline>> two_stages(const std::string& model, const std::string& transport,
                                                            int64_t tensor_parallel_size = 1) {
  ::setenv("NCCL_NVLS_ENABLE", "0", 1);
  Config config;
  config.model = model;
  config.device = "cuda";
  config.pipeline_parallel_size = 2;
  config.tensor_parallel_size = tensor_parallel_size;  // stage k on GPUs k*TP .. k*TP+TP-1
  config.stage_transport = transport;
  config.num_kv_blocks = 256;
  config.enforce_eager = true;
  return cluster::LocalPipeline::start(
      config, [](const Config& c) { return backends::make_backend(c); }, backends::load_stage_model);
}

// Every prompt at once, `max_tokens` greedy ids each (EOS ignored).
std::vector<std::vector<int32_t>> generate(ServingEngine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                           int64_t max_tokens) {
  testing::OutputCollector c;
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_TRUE(engine.submit(testing::greedy("p" + std::to_string(i), prompts[i], max_tokens),
                              c.callback("p" + std::to_string(i)))
                    .ok());
  EXPECT_TRUE(c.wait_all(prompts.size(), std::chrono::seconds(120))) << "a request hung";
  std::vector<std::vector<int32_t>> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "p" + std::to_string(i);
    EXPECT_EQ(c.finish[id], "length") << id << ": " << c.errors[id];
    ids.push_back(c.tokens[id]);
  }
  return ids;
}

TEST(NcclPipelineGpu, TwoStagesOverNcclGenerateWhatTheHostTransportDoes) {
  TROUPE_REQUIRE_GPU();
  const int num_gpus = cuda::query_devices().num_devices;
  if (num_gpus < 2) GTEST_SKIP() << "needs 2 GPUs (NCCL refuses two ranks on one GPU); found " << num_gpus;
  for (const std::string name : {"llama-tiny", "deepseek-v3-tiny"}) {
    SCOPED_TRACE(name);
    const std::string dir = troupe_source_dir() + "/tests/fixtures/models/" + name;
    const Oracle oracle = read_oracle(dir);
    ASSERT_FALSE(oracle.prompts.empty());
    std::vector<std::vector<int32_t>> want;
    {
      auto host = two_stages(dir, "host");
      ASSERT_TRUE(host.ok()) << host.error().message;
      want = generate(host.value()->engine(), oracle.prompts, oracle.max_new_tokens);
    }
    auto nccl = two_stages(dir, "nccl");
    ASSERT_TRUE(nccl.ok()) << nccl.error().message;
    const auto got = generate(nccl.value()->engine(), oracle.prompts, oracle.max_new_tokens);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].size(), size_t(oracle.max_new_tokens)) << "prompt " << i;
      EXPECT_EQ(got[i], want[i]) << "prompt " << i;
    }
    // A second round on the same links (their buffers reused, later step ids).
    const auto again = generate(nccl.value()->engine(), oracle.prompts, oracle.max_new_tokens);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(again[i], want[i]) << "second round, prompt " << i;
    const auto stopping = std::chrono::steady_clock::now();
    nccl.value().reset();  // ncclCommAbort on every link, never a hang in ncclCommDestroy
    EXPECT_LT(std::chrono::steady_clock::now() - stopping, std::chrono::seconds(30));
  }
}

// PP=2 x TP=2 on 4 GPUs: the links run between the stages' rank-0 GPUs; the other rank of stage 1
// reads the received hidden states peer to peer.
TEST(NcclPipelineGpu, TwoStagesOfTwoTensorParallelRanksOverNccl) {
  TROUPE_REQUIRE_GPU();
  const int num_gpus = cuda::query_devices().num_devices;
  if (num_gpus < 4) GTEST_SKIP() << "needs 4 GPUs (2 stages x 2 ranks); found " << num_gpus;
  const std::string dir = troupe_source_dir() + "/tests/fixtures/models/llama-tiny";
  auto model = ModelConfig::load(dir);
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(tensor_parallel_config(model.value(), 2).ok()) << "the fixture splits over 2 ranks";
  const Oracle oracle = read_oracle(dir);
  std::vector<std::vector<int32_t>> want;
  {
    auto host = two_stages(dir, "host", 2);
    ASSERT_TRUE(host.ok()) << host.error().message;
    want = generate(host.value()->engine(), oracle.prompts, oracle.max_new_tokens);
  }
  auto nccl = two_stages(dir, "nccl", 2);
  ASSERT_TRUE(nccl.ok()) << nccl.error().message;
  const auto got = generate(nccl.value()->engine(), oracle.prompts, oracle.max_new_tokens);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "prompt " << i;
}

TEST(NcclPipelineGpu, TwoStagesOnOneGpuAreRefusedNotHung) {
  TROUPE_REQUIRE_GPU();
  const int num_gpus = cuda::query_devices().num_devices;
  if (num_gpus != 1) GTEST_SKIP() << "two stages share a GPU only on a one-GPU machine; found " << num_gpus;
  const auto began = std::chrono::steady_clock::now();
  auto refused = two_stages(troupe_source_dir() + "/tests/fixtures/models/llama-tiny", "nccl");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("share GPU"), std::string::npos) << refused.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(20)) << "not the 30 s wire timeout";
}

}  // namespace
}  // namespace troupe
