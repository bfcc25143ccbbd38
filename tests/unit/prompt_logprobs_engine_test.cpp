// prompt_logprobs through the whole engine on the CPU backend (llama-tiny, deepseek-v3-tiny):
// every prompt position's logprob, rank and top tokens agree with transformers' logits
// (oracle_logits.safetensors), with chunked prefill and a prefix cache that already holds the
// prompt (which a prompt-logprobs request must not use), under preemption (each position once),
// and through two pipeline stages.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>

#include "backends/build_engine.hpp"
#include "backends/cpu_backend.hpp"
#include "engine/llm_engine.hpp"
#include "pipeline/local_pipeline.hpp"
#include "runtime/safetensors_file.hpp"
#include "tests/unit/fixture_oracle.hpp"
#include "tests/unit/greedy_request.hpp"

namespace troupe {
namespace {

const std::string kLlama = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";
const std::string kDeepseek = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-tiny";

Config engine_config(int64_t num_kv_blocks, int64_t max_num_batched_tokens, const std::string& model = kLlama) {
  Config config;
  config.model = model;
  config.num_threads = 2;
  config.num_kv_blocks = num_kv_blocks;
  config.block_size = 4;
  config.max_num_batched_tokens = max_num_batched_tokens;
  config.enable_prefix_caching = true;
  return config;
}

std::unique_ptr<LlmEngine> make_engine(int64_t num_kv_blocks, int64_t max_num_batched_tokens,
                                       const std::string& model = kLlama) {
  auto engine = backends::build_engine(engine_config(num_kv_blocks, max_num_batched_tokens, model));
  EXPECT_TRUE(engine.ok()) << engine.error().message;
  if (!engine.ok()) return nullptr;
  (*engine)->start();
  return std::move(engine.value());
}

struct Ended {
  std::vector<int32_t> tokens;
  std::vector<PromptLogprob> prompt_logprobs;
  int num_outputs_with_prompt_logprobs = 0;
  int64_t num_cached_tokens = 0;
  std::string finish;
};

// Submits every request at once and waits for all of them.
std::map<std::string, Ended> run(ServingEngine& engine, const std::vector<GenerationRequest>& requests) {
  std::mutex mutex;
  std::condition_variable cv;
  std::map<std::string, Ended> ended;
  size_t num_done = 0;
  for (const GenerationRequest& request : requests) {
    const std::string id = request.request_id;
    Status status = engine.submit(request, [&, id](const GenerationOutput& out) {
      std::lock_guard lock(mutex);
      Ended& e = ended[id];
      e.tokens.insert(e.tokens.end(), out.new_token_ids.begin(), out.new_token_ids.end());
      if (!out.prompt_logprobs.empty()) {
        e.prompt_logprobs = out.prompt_logprobs;
        ++e.num_outputs_with_prompt_logprobs;
      }
      e.num_cached_tokens = out.num_cached_tokens;
      if (out.finish_reason != FinishReason::none) {
        e.finish = to_string(out.finish_reason);
        ++num_done;
        cv.notify_all();
      }
    });
    EXPECT_TRUE(status.ok()) << status.error().message;
  }
  std::unique_lock lock(mutex);
  EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(120), [&] { return num_done == requests.size(); }));
  return ended;
}

GenerationRequest with_prompt_logprobs(const std::string& id, const std::vector<int32_t>& prompt, int64_t max_tokens,
                                       int64_t num_top) {
  GenerationRequest r = testing::greedy(id, prompt, max_tokens);
  r.params.prompt_logprobs = num_top;
  return r;
}

// log_softmax of one oracle row, in double.
std::vector<double> log_softmax(const float* row, int64_t vocab) {
  const double max_value = *std::max_element(row, row + vocab);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - max_value);
  std::vector<double> out(static_cast<size_t>(vocab));
  for (int64_t v = 0; v < vocab; ++v) out[size_t(v)] = double(row[v]) - max_value - std::log(sum);
  return out;
}

// The oracle's logits agree with ours to 1e-3 (llama_model_fixture_test), so logprobs to 2e-3; a
// rank or a top token may differ only where the oracle has a near tie.
constexpr double kTolerance = 3e-3;

void expect_matches_oracle(const std::vector<int32_t>& prompt, const std::vector<PromptLogprob>& got,
                           const float* logits, int64_t vocab, int64_t num_top) {
  ASSERT_EQ(got.size(), prompt.size() - 1);
  for (size_t j = 0; j + 1 < prompt.size(); ++j) {
    SCOPED_TRACE("prompt position " + std::to_string(j + 1));
    const std::vector<double> want = log_softmax(logits + int64_t(j) * vocab, vocab);
    const PromptLogprob& entry = got[j];
    const int32_t token = prompt[j + 1];
    EXPECT_EQ(entry.token_id, token);
    EXPECT_NEAR(entry.logprob, want[size_t(token)], kTolerance);
    int64_t rank_lo = 1, rank_hi = 1;
    for (double lp : want) {
      rank_lo += lp > want[size_t(token)] + kTolerance ? 1 : 0;
      rank_hi += lp > want[size_t(token)] - kTolerance ? 1 : 0;
    }
    EXPECT_GE(entry.rank, rank_lo);
    EXPECT_LE(entry.rank, rank_hi);
    ASSERT_EQ(int64_t(entry.top.size()), num_top);
    std::vector<double> sorted = want;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (int64_t k = 0; k < num_top; ++k) {
      const auto& [id, logprob] = entry.top[size_t(k)];
      EXPECT_NEAR(logprob, want[size_t(id)], kTolerance) << "top " << k;
      EXPECT_NEAR(want[size_t(id)], sorted[size_t(k)], kTolerance) << "top " << k << " is not the oracle's";
    }
  }
}

void expect_oracle_with_chunks_and_a_cached_prompt(const std::string& model) {
  const Oracle oracle = read_oracle(model);
  auto file = SafetensorsFile::open(model + "/oracle_logits.safetensors");
  ASSERT_TRUE(file.ok()) << file.error().message;
  auto engine = make_engine(256, 8, model);  // 8-token chunks
  ASSERT_TRUE(engine);
  const int64_t vocab = engine->model_config().vocab_size;
  // Every prompt is in the prefix cache first.
  std::vector<GenerationRequest> warm;
  for (size_t i = 0; i < oracle.prompts.size(); ++i)
    warm.push_back(testing::greedy("warm" + std::to_string(i), oracle.prompts[i], 1));
  run(*engine, warm);
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < oracle.prompts.size(); ++i)
    requests.push_back(with_prompt_logprobs("p" + std::to_string(i), oracle.prompts[i], 4, 3));
  auto ended = run(*engine, requests);
  for (size_t i = 0; i < oracle.prompts.size(); ++i) {
    SCOPED_TRACE("oracle prompt " + std::to_string(i));
    const Ended& e = ended["p" + std::to_string(i)];
    const auto& prompt = oracle.prompts[i];
    EXPECT_EQ(e.finish, "length");
    EXPECT_EQ(e.num_cached_tokens, 0) << "a prompt-logprobs request took cached blocks";
    EXPECT_EQ(e.tokens, std::vector<int32_t>(oracle.greedy[i].begin(), oracle.greedy[i].begin() + 4));
    EXPECT_EQ(e.num_outputs_with_prompt_logprobs, prompt.size() > 1 ? 1 : 0);
    const TensorView* logits = file.value()->find("logits." + std::to_string(i));
    ASSERT_NE(logits, nullptr);
    expect_matches_oracle(prompt, e.prompt_logprobs, static_cast<const float*>(logits->data), vocab, 3);
  }
  // The warm requests did hit the cache for the long prompts, so the 0 above is the rule, not chance.
  auto again = run(*engine, {testing::greedy("again", oracle.prompts.back(), 1)});
  EXPECT_GT(again["again"].num_cached_tokens, 0);
}

TEST(PromptLogprobsEngine, MatchTheOracleWithChunksAndACachedPrompt) { expect_oracle_with_chunks_and_a_cached_prompt(kLlama); }

// DeepSeek-V3 (MLA latent cache, MoE): the same rows through its own LM-head gather.
TEST(PromptLogprobsEngine, DeepseekMatchesTheOracle) { expect_oracle_with_chunks_and_a_cached_prompt(kDeepseek); }

TEST(PromptLogprobsEngine, ZeroTopGivesOnlyThePromptToken) {
  const Oracle oracle = read_oracle(kLlama);
  auto engine = make_engine(256, 8192);
  ASSERT_TRUE(engine);
  auto ended = run(*engine, {with_prompt_logprobs("z", oracle.prompts[1], 1, 0)});
  ASSERT_EQ(ended["z"].prompt_logprobs.size(), oracle.prompts[1].size() - 1);
  for (const PromptLogprob& entry : ended["z"].prompt_logprobs) {
    EXPECT_TRUE(entry.top.empty());
    EXPECT_LE(entry.logprob, 0.0f);
    EXPECT_GE(entry.rank, 1);
  }
}

// A cache so small that sequences are preempted mid-prompt and recomputed: each position still
// comes once, with the values of a roomy engine.
TEST(PromptLogprobsEngine, PreemptionKeepsEachPositionOnce) {
  const Oracle oracle = read_oracle(kLlama);
  std::vector<GenerationRequest> requests;
  for (int copy = 0; copy < 2; ++copy)
    for (size_t i = 1; i < oracle.prompts.size(); ++i)
      requests.push_back(with_prompt_logprobs("q" + std::to_string(copy) + "-" + std::to_string(i), oracle.prompts[i], 12, 2));
  auto roomy = make_engine(256, 8192);
  ASSERT_TRUE(roomy);
  auto want = run(*roomy, requests);
  auto small = make_engine(20, 16);  // 80 tokens of KV for 6 sequences of up to 52
  ASSERT_TRUE(small);
  auto got = run(*small, requests);
  EXPECT_GT(small->stats().num_preemptions_total, 0) << "the test meant to preempt";
  for (const GenerationRequest& r : requests) {
    SCOPED_TRACE(r.request_id);
    const Ended& a = got[r.request_id];
    const Ended& b = want[r.request_id];
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.num_outputs_with_prompt_logprobs, 1);
    ASSERT_EQ(a.prompt_logprobs.size(), r.prompt_ids.size() - 1);
    ASSERT_EQ(b.prompt_logprobs.size(), r.prompt_ids.size() - 1);
    for (size_t j = 0; j < a.prompt_logprobs.size(); ++j) {
      EXPECT_EQ(a.prompt_logprobs[j].token_id, r.prompt_ids[j + 1]);
      EXPECT_NEAR(a.prompt_logprobs[j].logprob, b.prompt_logprobs[j].logprob, 1e-4) << "position " << j + 1;
      EXPECT_EQ(a.prompt_logprobs[j].rank, b.prompt_logprobs[j].rank) << "position " << j + 1;
    }
  }
}

// Two stages over loopback UCX: the prompt rows cross the step codec and come back after the
// sampler's rows.
TEST(PromptLogprobsEngine, TwoPipelineStagesGiveTheSameValues) {
  const Oracle oracle = read_oracle(kLlama);
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < oracle.prompts.size(); ++i)
    requests.push_back(with_prompt_logprobs("s" + std::to_string(i), oracle.prompts[i], 3, 2));
  requests.push_back(testing::greedy("plain", oracle.prompts[2], 3));  // a batch mixing both kinds
  auto one = make_engine(256, 16);
  ASSERT_TRUE(one);
  auto want = run(*one, requests);
  Config config = engine_config(64, 16);
  config.pipeline_parallel_size = 2;
  config.num_threads = 1;
  auto pipeline = cluster::LocalPipeline::start(config, [](const Config& c) -> Result<std::unique_ptr<Backend>> {
    return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(c.num_threads));
  });
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  auto got = run((*pipeline)->engine(), requests);
  for (const GenerationRequest& r : requests) {
    SCOPED_TRACE(r.request_id);
    EXPECT_EQ(got[r.request_id].tokens, want[r.request_id].tokens);
    ASSERT_EQ(got[r.request_id].prompt_logprobs.size(), want[r.request_id].prompt_logprobs.size());
    for (size_t j = 0; j < got[r.request_id].prompt_logprobs.size(); ++j) {
      EXPECT_NEAR(got[r.request_id].prompt_logprobs[j].logprob, want[r.request_id].prompt_logprobs[j].logprob, 1e-4);
      std::vector<int32_t> got_top, want_top;
      for (const auto& [id, lp] : got[r.request_id].prompt_logprobs[j].top) got_top.push_back(id);
      for (const auto& [id, lp] : want[r.request_id].prompt_logprobs[j].top) want_top.push_back(id);
      EXPECT_EQ(got_top, want_top) << "position " << j + 1;
    }
  }
  EXPECT_TRUE(got["plain"].prompt_logprobs.empty());
}

}  // namespace
}  // namespace troupe
