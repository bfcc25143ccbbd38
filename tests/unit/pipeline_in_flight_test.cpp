// Pipeline steps in flight (two stages in one process over loopback UCX, CPU fp32 fixtures):
// greedy outputs with two micro-batches of different sequences in flight equal those of one step
// at a time and of the whole model in one engine, also under chunked prefill, preemption in a
// small cache and a sampled (seeded) request; a cancel of a sequence whose step is in flight ends
// it once the step is back.
#include <gtest/gtest.h>

#include <chrono>
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

struct Setup {
  std::string model = kLlama;
  int64_t num_kv_blocks = 256;
  int64_t max_num_batched_tokens = 8192;
};

Config make_config(const Setup& s) {
  Config config;
  config.model = s.model;
  config.num_threads = 1;
  config.num_kv_blocks = s.num_kv_blocks;
  config.block_size = 4;
  config.max_num_batched_tokens = s.max_num_batched_tokens;
  return config;
}

Result<std::unique_ptr<cluster::LocalPipeline>> two_stages(const Setup& s, int64_t steps_in_flight) {
  Config config = make_config(s);
  config.pipeline_parallel_size = 2;
  return cluster::LocalPipeline::start(
      config,
      [](const Config& c) -> Result<std::unique_ptr<Backend>> {
        return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(c.num_threads));
      },
      cluster::load_single_rank_model, steps_in_flight);
}

std::vector<std::vector<int32_t>> random_prompts(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < n; ++i) {
    std::vector<int32_t> p(3 + rng() % 30);
    for (auto& t : p) t = int32_t(5 + rng() % 250);
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// All prompts at once (the last one sampled with a seed, the second constrained to a regex, so
// its grammar masks are computed for a step in flight); the tokens of each, in order.
std::vector<std::vector<int32_t>> run_together(ServingEngine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                               int64_t max_tokens) {
  Collector c;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r = greedy("r" + std::to_string(i), prompts[i], max_tokens);
    if (i + 1 == prompts.size()) {
      r.params.temperature = 0.8;
      r.params.seed = 1234;
    }
    if (i == 1) {
      r.params.temperature = 1.0;
      r.params.seed = 99;
      r.params.constraint = OutputConstraint{OutputConstraint::Kind::regex, "[a-z]{4,12}"};
    }
    EXPECT_TRUE(engine.submit(r, c.callback(r.request_id)).ok());
  }
  EXPECT_TRUE(c.wait_all(prompts.size()));
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "r" + std::to_string(i);
    EXPECT_TRUE(c.finish[id] == "length" || (i == 1 && c.finish[id] == "stop")) << id << ": " << c.errors[id];
    out.push_back(c.tokens[id]);
  }
  return out;
}

void expect_in_flight_matches(const Setup& s, bool expect_preemption) {
  const auto prompts = random_prompts(10, 17);
  auto whole = backends::build_engine(make_config(s));
  ASSERT_TRUE(whole.ok()) << whole.error().message;
  (*whole)->start();
  const auto want = run_together(**whole, prompts, 20);
  (*whole)->stop();

  auto serial = two_stages(s, 1);
  ASSERT_TRUE(serial.ok()) << serial.error().message;
  EXPECT_EQ((*serial)->engine().max_steps_in_flight(), 1);
  EXPECT_EQ(run_together((*serial)->engine(), prompts, 20), want);
  EXPECT_EQ((*serial)->engine().num_overlapped_steps(), 0);
  serial->reset();

  auto overlapped = two_stages(s, 0);  // one step per stage
  ASSERT_TRUE(overlapped.ok()) << overlapped.error().message;
  LlmEngine& engine = (*overlapped)->engine();
  EXPECT_EQ(engine.max_steps_in_flight(), 2);
  EXPECT_EQ(run_together(engine, prompts, 20), want);
  EXPECT_GT(engine.num_overlapped_steps(), 10) << "the second micro-batch never started before the first came back";
  if (expect_preemption) EXPECT_GT(engine.stats().num_preemptions_total, 0) << "the cache never ran short";
}

TEST(PipelineInFlight, TwoMicroBatchesGiveTheTokensOfOneStepAtATime) { expect_in_flight_matches({}, false); }

TEST(PipelineInFlight, ChunkedPrefillAndPreemptionGiveTheSameTokens) {
  expect_in_flight_matches({.num_kv_blocks = 40, .max_num_batched_tokens = 16}, true);
}

TEST(PipelineInFlight, DeepseekLatentCacheGivesTheSameTokens) {
  expect_in_flight_matches({.model = kDeepseek, .max_num_batched_tokens = 32}, false);
}

// When the first request has 3 tokens it cancels all the others; some of them are in the other
// micro-batch, in flight: they end as aborted once their step is back, the first runs on.
TEST(PipelineInFlight, CancellingSequencesInFlightEndsThemAfterTheirStep) {
  auto pipeline = two_stages({}, 0);
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  LlmEngine& engine = (*pipeline)->engine();
  const auto prompts = random_prompts(8, 5);
  Collector c;
  bool cancelled = false;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "c" + std::to_string(i);
    auto collect = c.callback(id);
    OutputCallback on_output = collect;
    if (i == 0) {
      on_output = [&, collect](const GenerationOutput& out) {
        collect(out);
        size_t n = 0;
        {
          std::lock_guard lock(c.mutex);
          n = c.tokens["c0"].size();
        }
        if (!cancelled && n >= 3) {
          cancelled = true;
          for (size_t k = 1; k < prompts.size(); ++k) engine.cancel("c" + std::to_string(k));
        }
      };
    }
    ASSERT_TRUE(engine.submit(greedy(id, prompts[i], 40), on_output).ok());
  }
  ASSERT_TRUE(c.wait_all(prompts.size()));
  EXPECT_EQ(c.finish["c0"], "length");
  EXPECT_EQ(c.tokens["c0"].size(), 40u);
  for (size_t k = 1; k < prompts.size(); ++k) {
    EXPECT_EQ(c.finish["c" + std::to_string(k)], "abort") << k;
    EXPECT_LT(c.tokens["c" + std::to_string(k)].size(), 40u) << k;
  }
  // Every block comes back (stats are published after the step that ended the last request).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine.stats().num_kv_blocks_used != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(engine.stats().num_kv_blocks_used, 0);
}

}  // namespace
}  // namespace troupe
