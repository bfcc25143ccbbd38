// The engine as the HTTP server drives it: concurrent requests through the continuous-batching
// scheduler give exactly what each gives alone (greedy), also when a small KV cache forces
// preemption and recomputation; cancelled requests free their blocks.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "tests/unit/graph_claiming_backend.hpp"
#include "tests/unit/greedy_request.hpp"
#include "tests/unit/output_collector.hpp"

namespace troupe {
namespace {

using testing::greedy;
using Collector = testing::OutputCollector;

const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";


std::unique_ptr<LlmEngine> make_engine(int64_t num_kv_blocks, int64_t max_num_batched_tokens = 8192,
                                       std::unique_ptr<Backend> backend = nullptr, const std::string& model = kModel) {
  Config config;
  config.model = model;
  config.num_threads = 2;
  config.num_kv_blocks = num_kv_blocks;
  config.block_size = 4;
  config.max_num_batched_tokens = max_num_batched_tokens;
  auto engine = backends::build_engine(config, std::move(backend));
  EXPECT_TRUE(engine.ok()) << engine.error().message;
  (*engine)->start();
  return std::move(engine.value());
}

std::vector<std::vector<int32_t>> random_prompts(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> prompts(n);
  for (auto& p : prompts) {
    p.resize(1 + rng() % 30);
    for (auto& t : p) t = int32_t(5 + rng() % 500);  // avoid the special ids 0..4
  }
  return prompts;
}


std::vector<std::vector<int32_t>> run_alone(const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens,
                                            const std::string& model = kModel) {
  auto engine = make_engine(256, 8192, nullptr, model);
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    Collector c;
    const std::string id = "alone-" + std::to_string(i);
    EXPECT_TRUE(engine->submit(greedy(id, prompts[i], max_tokens), c.callback(id)).ok());
    EXPECT_TRUE(c.wait_all(1));
    out.push_back(c.tokens[id]);
  }
  return out;
}

// `graphs`: the engine runs on a backend claiming step graphs (its ops still run eagerly), so decode
// steps go through GraphedModel's padding and scratch block.
void expect_concurrent_matches_alone(int64_t num_kv_blocks, int64_t token_budget, bool graphs = false,
                                     const std::string& model = kModel) {
  const auto prompts = random_prompts(24, 11);
  const int64_t max_tokens = 12;
  const auto alone = run_alone(prompts, max_tokens, model);

  auto claiming = graphs ? std::make_unique<GraphClaimingBackend>() : nullptr;
  GraphClaimingBackend* claimed = claiming.get();
  auto engine = make_engine(num_kv_blocks, token_budget, std::move(claiming), model);
  Collector c;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "req-" + std::to_string(i);
    ASSERT_TRUE(engine->submit(greedy(id, prompts[i], max_tokens), c.callback(id)).ok());
  }
  ASSERT_TRUE(c.wait_all(prompts.size()));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "req-" + std::to_string(i);
    EXPECT_EQ(c.finish[id], "length") << id;
    EXPECT_EQ(c.tokens[id], alone[i]) << id;
  }
  // Stats are published after the step whose callbacks ended the last request.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine->stats().num_running != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const EngineStats stats = engine->stats();
  EXPECT_EQ(stats.num_kv_blocks_used, 0);
  EXPECT_EQ(stats.num_running, 0);
  EXPECT_EQ(stats.num_generation_tokens_total, int64_t(prompts.size()) * max_tokens);
  if (claimed != nullptr) EXPECT_FALSE(claimed->begins.empty()) << "no decode step went through a step graph";
}

TEST(LlmEngine, ConcurrentRequestsMatchEachAlone) { expect_concurrent_matches_alone(256, 64); }

// DeepSeek-V3 (MLA over the latent cache, MoE routing per token): a mixed batch of prefill chunks
// and decodes gives each sequence what it gets alone, also with a cache that holds only a few
// sequences at a time (fp32 weights).
TEST(LlmEngine, DeepseekConcurrentRequestsMatchEachAlone) {
  const std::string lite = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-lite-tiny";
  expect_concurrent_matches_alone(256, 64, false, lite);
  expect_concurrent_matches_alone(24, 64, false, lite);
}

TEST(LlmEngine, PreemptionUnderASmallCacheStillMatches) {
  // 24 requests of up to 42 tokens in 40 blocks of 4 tokens: the scheduler must preempt.
  expect_concurrent_matches_alone(40, 64);
}

TEST(LlmEngine, StepGraphsWithPreemptionStillMatch) {
  // The same through GraphedModel: padded decode steps, one scratch block the scheduler never sees.
  expect_concurrent_matches_alone(40, 64, /*graphs=*/true);
}

TEST(LlmEngine, CancelFreesBlocksAtOnce) {
  auto engine = make_engine(256);
  Collector c;
  for (int i = 0; i < 4; ++i) {
    const std::string id = "cancel-" + std::to_string(i);
    ASSERT_TRUE(engine->submit(greedy(id, {10, 20, 30, 40, 50}, 400), c.callback(id)).ok());
  }
  for (int i = 0; i < 4; ++i) engine->cancel("cancel-" + std::to_string(i));
  ASSERT_TRUE(c.wait_all(4));
  for (auto& [id, reason] : c.finish) EXPECT_EQ(reason, "abort") << id;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine->stats().num_kv_blocks_used != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(engine->stats().num_kv_blocks_used, 0);
}

TEST(LlmEngine, RejectsBadRequestsWithClearErrors) {
  auto engine = make_engine(64);
  Collector c;
  auto empty = engine->submit(greedy("e", {}, 4), c.callback("e"));
  EXPECT_FALSE(empty.ok());
  auto outside = engine->submit(greedy("o", {1, 999999}, 4), c.callback("o"));
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.error().message.find("999999"), std::string::npos);
  auto too_long = engine->submit(greedy("l", std::vector<int32_t>(600, 7), 4), c.callback("l"));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().code, ErrorCode::invalid_argument);
  GenerationRequest bad = greedy("b", {1, 2}, 4);
  bad.params.top_p = 0.0;
  EXPECT_FALSE(engine->submit(bad, c.callback("b")).ok());
}

TEST(LlmEngine, StopsAtEosUnlessIgnored) {
  auto engine = make_engine(64);
  Collector c;
  GenerationRequest r = greedy("eos", {10, 11, 12}, 64);
  r.params.ignore_eos = false;
  // Whatever the model's first greedy token is, declaring it a stop id must end the request there.
  GenerationRequest probe = greedy("probe", {10, 11, 12}, 1);
  ASSERT_TRUE(engine->submit(probe, c.callback("probe")).ok());
  ASSERT_TRUE(c.wait_all(1));
  r.params.stop_token_ids = {c.tokens["probe"][0]};
  ASSERT_TRUE(engine->submit(r, c.callback("eos")).ok());
  ASSERT_TRUE(c.wait_all(2));
  EXPECT_EQ(c.finish["eos"], "stop");
  EXPECT_EQ(c.tokens["eos"].size(), 1u);
}

}  // namespace
}  // namespace troupe
