// Automatic prefix caching through the whole engine on the CPU backend (fp32 fixtures): greedy
// outputs are the same token for token with and without it, for prompts sharing prefixes, multi-turn
// chats, a cache small enough to preempt, chunked prefill, DeepSeek-V3's latent cache and two
// pipeline stages in one process; the hit counters count the tokens they should.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "backends/build_engine.hpp"
#include "backends/cpu_backend.hpp"
#include "engine/llm_engine.hpp"
#include "pipeline/local_pipeline.hpp"
#include "tests/unit/greedy_request.hpp"
#include "tests/unit/output_collector.hpp"

namespace troupe {
namespace {

using testing::greedy;

using Collector = testing::OutputCollector;

const std::string kLlama = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";
const std::string kDeepseek = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-tiny";


struct EngineOptions {
  std::string model = kLlama;
  bool prefix_caching = true;
  int64_t num_kv_blocks = 256;
  int64_t max_num_batched_tokens = 8192;
};

Config engine_config(const EngineOptions& o) {
  Config config;
  config.model = o.model;
  config.num_threads = 2;
  config.num_kv_blocks = o.num_kv_blocks;
  config.block_size = 4;
  config.max_num_batched_tokens = o.max_num_batched_tokens;
  config.enable_prefix_caching = o.prefix_caching;
  return config;
}

std::unique_ptr<LlmEngine> make_engine(const EngineOptions& o) {
  auto engine = backends::build_engine(engine_config(o));
  EXPECT_TRUE(engine.ok()) << engine.error().message;
  if (!engine.ok()) return nullptr;
  (*engine)->start();
  return std::move(engine.value());
}


// Runs the prompts one after another (so later ones can hit earlier ones' blocks) or all at once.
std::vector<std::vector<int32_t>> run(ServingEngine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                      int64_t max_tokens, bool together) {
  static int counter = 0;
  Collector c;
  std::vector<std::string> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ids.push_back("r" + std::to_string(counter++));
    EXPECT_TRUE(engine.submit(greedy(ids.back(), prompts[i], max_tokens), c.callback(ids.back())).ok());
    if (!together) EXPECT_TRUE(c.wait_all(i + 1));
  }
  EXPECT_TRUE(c.wait_all(prompts.size()));
  std::vector<std::vector<int32_t>> out;
  for (const auto& id : ids) out.push_back(c.tokens[id]);
  return out;
}

EngineStats settled_stats(ServingEngine& engine, int64_t num_queries) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto settled = [&] {
    const EngineStats s = engine.stats();
    return s.num_prefix_cache_queries_total >= num_queries && s.num_running == 0 && s.num_waiting == 0;
  };
  while (!settled() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return engine.stats();
}

// `n` prompts: a shared "system prompt" of `shared` tokens, then a distinct suffix of 1-20 tokens.
std::vector<std::vector<int32_t>> shared_prefix_prompts(size_t n, int64_t shared, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> system(shared);
  for (auto& t : system) t = int32_t(5 + rng() % 500);
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < n; ++i) {
    auto p = system;
    p.push_back(int32_t(5 + i));  // distinct first suffix token
    const int64_t extra = rng() % 20;
    for (int64_t k = 0; k < extra; ++k) p.push_back(int32_t(5 + rng() % 500));
    prompts.push_back(std::move(p));
  }
  return prompts;
}

int64_t total_tokens(const std::vector<std::vector<int32_t>>& prompts) {
  int64_t n = 0;
  for (const auto& p : prompts) n += int64_t(p.size());
  return n;
}

void expect_shared_prefixes_match(const std::string& model) {
  const auto prompts = shared_prefix_prompts(8, 40, 7);
  auto cold = make_engine({.model = model, .prefix_caching = false});
  auto warm = make_engine({.model = model});
  ASSERT_TRUE(cold && warm);
  const auto want = run(*cold, prompts, 10, false);
  EXPECT_EQ(run(*warm, prompts, 10, false), want);
  // Each prompt after the first finds the 40 shared tokens (10 blocks of 4).
  const EngineStats stats = settled_stats(*warm, total_tokens(prompts));
  EXPECT_EQ(stats.num_prefix_cache_queries_total, total_tokens(prompts));
  EXPECT_EQ(stats.num_prefix_cache_hits_total, 40 * int64_t(prompts.size() - 1));
  EXPECT_EQ(cold->stats().num_prefix_cache_queries_total, 0);
  // Each request's outputs say how many of its prompt tokens were cached (vLLM's num_cached_tokens).
  Collector one;
  ASSERT_TRUE(warm->submit(greedy("one", prompts[3], 2), one.callback("one")).ok());
  ASSERT_TRUE(one.wait_all(1));
  EXPECT_EQ(one.num_cached["one"], (int64_t(prompts[3].size()) - 1) / 4 * 4);
  const int64_t extra_queries = int64_t(prompts[3].size());
  EXPECT_EQ(cold->stats().num_prefix_cache_hits_total, 0);
  // Again, all at once (later ones hit nothing cached by the others yet, or their first blocks)
  // and once more one at a time: now every prompt finds all its full blocks but the last token's.
  EXPECT_EQ(run(*warm, prompts, 10, true), want);
  const int64_t before = warm->stats().num_prefix_cache_hits_total;
  EXPECT_EQ(run(*warm, prompts, 10, false), want);
  int64_t hits = 0;
  for (const auto& p : prompts) hits += (int64_t(p.size()) - 1) / 4 * 4;
  EXPECT_EQ(settled_stats(*warm, 3 * total_tokens(prompts) + extra_queries).num_prefix_cache_hits_total - before, hits);
}

TEST(PrefixCacheEngine, SharedPrefixesGiveTheSameTokens) { expect_shared_prefixes_match(kLlama); }

TEST(PrefixCacheEngine, DeepseekLatentCacheSharedPrefixesGiveTheSameTokens) {
  expect_shared_prefixes_match(kDeepseek);
}

// A chat of 8 turns: each prompt is the previous prompt, its answer and a new user message.
void expect_multi_turn_matches(const EngineOptions& options) {
  EngineOptions off = options;
  off.prefix_caching = false;
  auto cold = make_engine(off);
  auto warm = make_engine(options);
  ASSERT_TRUE(cold && warm);
  std::mt19937 rng(3);
  std::vector<int32_t> history;
  for (int k = 0; k < 9; ++k) history.push_back(int32_t(5 + rng() % 500));
  int64_t num_hits_at_least = 0;
  for (int turn = 0; turn < 8; ++turn) {
    const int64_t prev = int64_t(history.size());
    for (int k = 0; k < 3 + int(rng() % 6); ++k) history.push_back(int32_t(5 + rng() % 500));
    const auto want = run(*cold, {history}, 6, false);
    ASSERT_EQ(run(*warm, {history}, 6, false), want) << "turn " << turn;
    if (turn > 0) num_hits_at_least += prev / 4 * 4 - 4;  // the last turn's prompt + answer minus a block
    history.insert(history.end(), want[0].begin(), want[0].end());
  }
  EXPECT_GE(warm->stats().num_prefix_cache_hits_total, num_hits_at_least);
}

TEST(PrefixCacheEngine, MultiTurnChatGivesTheSameTokens) { expect_multi_turn_matches({}); }

TEST(PrefixCacheEngine, DeepseekMultiTurnChatGivesTheSameTokens) { expect_multi_turn_matches({.model = kDeepseek}); }

// Many requests sharing prefixes at once in a cache that holds a few of them: preemption
// (recompute from the cached blocks) and eviction; and the same under 8-token prefill chunks.
void expect_concurrent_match(const EngineOptions& options) {
  auto prompts = shared_prefix_prompts(12, 24, 5);
  const auto others = shared_prefix_prompts(12, 13, 9);
  prompts.insert(prompts.end(), others.begin(), others.end());
  auto cold = make_engine({.model = options.model, .prefix_caching = false});
  ASSERT_TRUE(cold);
  const auto want = run(*cold, prompts, 12, false);
  auto warm = make_engine(options);
  ASSERT_TRUE(warm);
  EXPECT_EQ(run(*warm, prompts, 12, true), want);
  EXPECT_EQ(run(*warm, prompts, 12, true), want);
  const EngineStats stats = settled_stats(*warm, 2 * total_tokens(prompts));
  EXPECT_GT(stats.num_prefix_cache_hits_total, 0);
  EXPECT_EQ(stats.num_kv_blocks_used, 0);
}

TEST(PrefixCacheEngine, PreemptionUnderASmallCacheGivesTheSameTokens) {
  expect_concurrent_match({.num_kv_blocks = 40, .max_num_batched_tokens = 64});
}

TEST(PrefixCacheEngine, ChunkedPrefillGivesTheSameTokens) {
  expect_concurrent_match({.max_num_batched_tokens = 8});
}

TEST(PrefixCacheEngine, DeepseekPreemptionAndChunksGiveTheSameTokens) {
  expect_concurrent_match({.model = kDeepseek, .num_kv_blocks = 40, .max_num_batched_tokens = 16});
}

// Two pipeline stages (one process, loopback UCX): every stage holds the cached blocks' KV,
// since it ran the steps that wrote them into the same block ids.
TEST(PrefixCacheEngine, TwoPipelineStagesGiveTheSameTokens) {
  const auto prompts = shared_prefix_prompts(6, 32, 11);
  auto cold = make_engine({.prefix_caching = false});
  ASSERT_TRUE(cold);
  const auto want = run(*cold, prompts, 8, false);
  Config config = engine_config({.num_kv_blocks = 64});
  config.pipeline_parallel_size = 2;
  config.num_threads = 1;
  auto pipeline = cluster::LocalPipeline::start(config, [](const Config& c) -> Result<std::unique_ptr<Backend>> {
    return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(c.num_threads));
  });
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  LlmEngine& engine = (*pipeline)->engine();
  EXPECT_EQ(run(engine, prompts, 8, false), want);
  EXPECT_EQ(run(engine, prompts, 8, true), want);
  EXPECT_GE(settled_stats(engine, 2 * total_tokens(prompts)).num_prefix_cache_hits_total, 32 * 5);
}

}  // namespace
}  // namespace troupe
