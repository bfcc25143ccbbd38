// Overlapped scheduling (Config::async_scheduling) on the CPU backend, fp32 fixtures: every
// request gets the same tokens and finish reason with overlap on and off: greedy and seeded
// sampling, stop token ids and EOS ending a sequence whose next step is already scheduled,
// max_tokens of 1 and 2, penalties, logprobs and a grammar (they run one step at a time), chunked
// prefill and preemption in a small cache; cancels of sequences in flight end them; every KV
// block comes back. The scheduler's run-ahead entries are checked on their own too.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
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

std::unique_ptr<LlmEngine> make_engine(const Setup& s, bool overlap) {
  Config config;
  config.model = s.model;
  config.num_threads = 1;
  config.num_kv_blocks = s.num_kv_blocks;
  config.block_size = 4;
  config.max_num_batched_tokens = s.max_num_batched_tokens;
  config.async_scheduling = overlap;
  auto engine = backends::build_engine(config);
  EXPECT_TRUE(engine.ok()) << engine.error().message;
  if (!engine.ok()) return nullptr;
  EXPECT_EQ((*engine)->is_overlapping(), overlap);
  (*engine)->start();
  return std::move(engine.value());
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

struct Outcome {
  std::map<std::string, std::vector<int32_t>> tokens;
  std::map<std::string, std::string> finish;
  std::map<std::string, std::vector<float>> logprobs;
  bool operator==(const Outcome& o) const { return tokens == o.tokens && finish == o.finish; }
};

// Request i of the mix: mostly greedy to max_tokens; some sampled with a seed, some ended by a
// stop id (stops[i] >= 0: a token the greedy run produced), short max_tokens, a penalty, logprobs,
// a regex grammar.
GenerationRequest request(size_t i, const std::vector<int32_t>& prompt, int32_t stop_id) {
  GenerationRequest r = greedy("r" + std::to_string(i), prompt, 24);
  switch (i % 8) {
    case 1: r.params.temperature = 0.8; r.params.seed = int64_t(1000 + i); break;
    case 2: r.params.stop_token_ids = {stop_id}; break;
    case 3: r.params.max_tokens = 1 + int64_t(i / 8); break;
    case 4: r.params.frequency_penalty = 0.5; r.params.temperature = 0.7; r.params.seed = int64_t(i); break;
    case 5: r.params.logprobs = 2; r.params.temperature = 1.0; r.params.top_k = 20; r.params.seed = 7; break;
    case 6:
      r.params.temperature = 1.0;
      r.params.seed = 99;
      r.params.constraint = OutputConstraint{OutputConstraint::Kind::regex, "[a-z]{4,12}"};
      break;
    case 7: r.params.ignore_eos = false; r.params.stop_token_ids = {stop_id}; r.params.temperature = 0.5; r.params.seed = 3; break;
    default: break;
  }
  return r;
}

Outcome run_together(ServingEngine& engine, const std::vector<std::vector<int32_t>>& prompts,
                     const std::vector<int32_t>& stop_ids) {
  Collector c;
  std::map<std::string, std::vector<float>> logprobs;
  std::mutex logprobs_mutex;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r = request(i, prompts[i], stop_ids[i]);
    auto collect = c.callback(r.request_id);
    const std::string id = r.request_id;
    OutputCallback on_output = [&, collect, id](const GenerationOutput& out) {
      {
        std::lock_guard lock(logprobs_mutex);
        for (float lp : out.logprobs) logprobs[id].push_back(lp);
      }
      collect(out);
    };
    EXPECT_TRUE(engine.submit(r, on_output).ok());
  }
  EXPECT_TRUE(c.wait_all(prompts.size()));
  Outcome out;
  std::lock_guard lock(c.mutex);
  out.tokens = c.tokens;
  out.finish = c.finish;
  for (const auto& [id, error] : c.errors) EXPECT_EQ(error, "") << id;
  out.logprobs = logprobs;
  return out;
}

void wait_for_blocks_back(LlmEngine& engine) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine.stats().num_kv_blocks_used != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(engine.stats().num_kv_blocks_used, 0);
}

void expect_overlap_matches(const Setup& s, bool expect_preemption) {
  const auto prompts = random_prompts(16, 23);
  // Stop ids: the 6th greedy token of each prompt, so stops come mid-stream.
  std::vector<int32_t> stop_ids(prompts.size(), -1);
  {
    auto probe = make_engine(s, false);
    ASSERT_TRUE(probe);
    Collector c;
    for (size_t i = 0; i < prompts.size(); ++i)
      ASSERT_TRUE(probe->submit(greedy("p" + std::to_string(i), prompts[i], 6), c.callback("p" + std::to_string(i))).ok());
    ASSERT_TRUE(c.wait_all(prompts.size()));
    for (size_t i = 0; i < prompts.size(); ++i) stop_ids[i] = c.tokens["p" + std::to_string(i)].back();
  }
  auto serial = make_engine(s, false);
  ASSERT_TRUE(serial);
  const Outcome want = run_together(*serial, prompts, stop_ids);
  serial->stop();

  auto overlapped = make_engine(s, true);
  ASSERT_TRUE(overlapped);
  const Outcome got = run_together(*overlapped, prompts, stop_ids);
  for (const auto& [id, tokens] : want.tokens) {
    EXPECT_EQ(got.tokens.at(id), tokens) << id;
    EXPECT_EQ(got.finish.at(id), want.finish.at(id)) << id;
  }
  for (const auto& [id, lps] : want.logprobs) {
    ASSERT_EQ(got.logprobs.at(id).size(), lps.size()) << id;
    for (size_t k = 0; k < lps.size(); ++k) EXPECT_NEAR(got.logprobs.at(id)[k], lps[k], 1e-4) << id << " token " << k;
  }
  // Some requests must have stopped early on a stop id, or the test shows nothing about dropped rows.
  int64_t num_stopped = 0;
  for (const auto& [id, finish] : want.finish) num_stopped += finish == "stop" ? 1 : 0;
  EXPECT_GE(num_stopped, 2);
  EXPECT_GT(overlapped->num_overlapped_steps(), 10) << "no step was scheduled while another ran";
  overlapped->stop();  // publishes the stats of the last step
  if (expect_preemption) {
    EXPECT_GT(overlapped->stats().num_preemptions_total, 0) << "the cache never ran short";
  }
  EXPECT_EQ(overlapped->stats().num_generation_tokens_total, serial->stats().num_generation_tokens_total);
  wait_for_blocks_back(*overlapped);
}

TEST(OverlappedScheduling, GivesTheTokensOfOneStepAtATime) { expect_overlap_matches({}, false); }

TEST(OverlappedScheduling, ChunkedPrefillAndPreemptionGiveTheSameTokens) {
  expect_overlap_matches({.num_kv_blocks = 40, .max_num_batched_tokens = 16}, true);
}

TEST(OverlappedScheduling, DeepseekLatentCacheGivesTheSameTokens) {
  expect_overlap_matches({.model = kDeepseek, .max_num_batched_tokens = 32}, false);
}

// When the first request has 3 tokens it cancels all the others, which are in flight (scheduled
// ahead): they end as aborted after at most their steps in flight, the first runs on.
TEST(OverlappedScheduling, CancellingSequencesInFlightEndsThem) {
  auto engine = make_engine({}, true);
  ASSERT_TRUE(engine);
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
          for (size_t k = 1; k < prompts.size(); ++k) engine->cancel("c" + std::to_string(k));
        }
      };
    }
    ASSERT_TRUE(engine->submit(greedy(id, prompts[i], 40), on_output).ok());
  }
  ASSERT_TRUE(c.wait_all(prompts.size()));
  EXPECT_EQ(c.finish["c0"], "length");
  EXPECT_EQ(c.tokens["c0"].size(), 40u);
  for (size_t k = 1; k < prompts.size(); ++k) {
    EXPECT_EQ(c.finish["c" + std::to_string(k)], "abort") << k;
    EXPECT_LT(c.tokens["c" + std::to_string(k)].size(), 10u) << k;
  }
  wait_for_blocks_back(*engine);
  // A cancelled id may be submitted again and runs to the end (the engine forgets an id just after
  // its last callback returns, so a submit racing that is refused as live: retried).
  Collector again;
  Status resubmitted = engine->submit(greedy("c1", prompts[1], 5), again.callback("c1"));
  for (int i = 0; i < 100 && !resubmitted.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    resubmitted = engine->submit(greedy("c1", prompts[1], 5), again.callback("c1"));
  }
  ASSERT_TRUE(resubmitted.ok()) << resubmitted.error().message;
  ASSERT_TRUE(again.wait_all(1));
  EXPECT_EQ(again.tokens["c1"].size(), 5u);
}

// The scheduler alone: a decode in flight gets a run-ahead entry reading its sampled row, unless
// it needs the host (a penalty), would end at max_tokens with the token in flight, or is cancelled;
// postprocessing both batches in order gives the tokens in order.
TEST(OverlappedScheduling, SchedulerRunsDecodesAheadOnlyWhenTheHostIsNotNeeded) {
  SchedulerConfig config;
  config.num_blocks = 64;
  config.block_size = 4;
  Scheduler scheduler(config);
  auto add = [&](const std::string& id, int64_t max_tokens, double penalty) {
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    p.presence_penalty = penalty;
    EXPECT_TRUE(scheduler.add(Sequence(id, {1, 2, 3, 4, 5}, p)).ok());
  };
  add("plain", 10, 0);
  add("penalty", 10, 0.5);
  add("short", 2, 0);
  add("cancelled", 10, 0);
  ScheduledBatch first = scheduler.schedule();  // the prefills
  ASSERT_EQ(first.entries.size(), 4u);
  ASSERT_TRUE(scheduler.postprocess(first, {11, 12, 13, 14}).ok());
  ScheduledBatch second = scheduler.schedule();  // decodes, in flight
  ASSERT_EQ(second.entries.size(), 4u);
  scheduler.find("cancelled")->is_cancelled = true;
  ScheduledBatch third = scheduler.schedule(0, &second);
  ASSERT_EQ(third.entries.size(), 1u);
  EXPECT_EQ(third.entries[0].seq->request_id, "plain");
  EXPECT_EQ(third.entries[0].previous_row, 0);
  EXPECT_EQ(third.entries[0].start_position, 6);
  EXPECT_TRUE(scheduler.check_invariants().ok());
  EXPECT_EQ(scheduler.num_in_flight(), 5);  // "plain" twice
  auto finished = scheduler.postprocess(second, {21, 22, 23, 24});
  ASSERT_TRUE(finished.ok());
  ASSERT_EQ(finished->size(), 1u);  // "short" at max_tokens
  EXPECT_TRUE(scheduler.is_in_flight("plain"));
  EXPECT_FALSE(scheduler.is_in_flight("penalty"));
  ASSERT_TRUE(scheduler.postprocess(third, {31}).ok());
  EXPECT_FALSE(scheduler.is_in_flight("plain"));
  EXPECT_EQ(scheduler.find("plain")->output_ids, (std::vector<int32_t>{11, 21, 31}));
  EXPECT_EQ(scheduler.find("plain")->num_computed_tokens, 7);
  EXPECT_TRUE(scheduler.check_invariants().ok());
}

}  // namespace
}  // namespace troupe
