#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/sampler.hpp"

namespace troupe {
namespace {

// Reference log-softmax in double.
std::vector<double> log_softmax(const std::vector<float>& x) {
  double m = -std::numeric_limits<double>::infinity();
  for (float v : x) m = std::max<double>(m, v);
  double s = 0.0;
  for (float v : x) s += std::exp(v - m);
  std::vector<double> out;
  for (float v : x) out.push_back(v - m - std::log(s));
  return out;
}

std::vector<float> random_logits(int64_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(gen);
  return x;
}

// Draws num_draws tokens for one row and returns the frequency of each id.
std::vector<double> frequencies(const std::vector<float>& logits, const SamplingParams& params, int num_draws) {
  Sampler sampler;
  SequenceRng rng(1234);
  std::vector<double> freq(logits.size(), 0.0);
  for (int i = 0; i < num_draws; ++i) {
    auto t = sampler.sample_row(logits.data(), logits.size(), SamplerRow{&params, nullptr, nullptr, &rng});
    EXPECT_TRUE(t.ok());
    freq[t->token_id] += 1.0 / num_draws;
  }
  return freq;
}

int32_t sample_one(Sampler& sampler, const std::vector<float>& logits, const SamplingParams& p, SequenceRng& rng) {
  auto t = sampler.sample_row(logits.data(), logits.size(), SamplerRow{&p, nullptr, nullptr, &rng});
  EXPECT_TRUE(t.ok()) << t.error().message;
  return t.ok() ? t->token_id : -1;
}

TEST(Sampler, GreedyIsArgmaxWithLowestIndexOnTies) {
  Sampler sampler;
  SamplingParams p;
  p.temperature = 0.0;
  p.logprobs = 2;
  const std::vector<float> logits = {1.0f, 5.0f, -2.0f, 5.0f, 0.0f};
  auto t = sampler.sample_row(logits.data(), logits.size(), SamplerRow{&p});
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->token_id, 1);
  const auto ref = log_softmax(logits);
  EXPECT_NEAR(t->logprob, ref[1], 1e-5);
  ASSERT_EQ(t->top_logprobs.size(), 2u);
  EXPECT_EQ(t->top_logprobs[0].first, 1);
  EXPECT_EQ(t->top_logprobs[1].first, 3);
  EXPECT_NEAR(t->top_logprobs[1].second, ref[3], 1e-5);
}

TEST(Sampler, TopK1TinyTopPAndTinyTemperatureEqualGreedy) {
  Sampler sampler;
  SamplingParams greedy;
  greedy.temperature = 0.0;
  SamplingParams top_k1;
  top_k1.top_k = 1;
  SamplingParams tiny_p;
  tiny_p.top_p = 1e-6;
  SamplingParams cold;
  cold.temperature = 1e-3;
  SequenceRng rng(7);
  for (uint64_t s = 0; s < 50; ++s) {
    auto logits = random_logits(1000, s);
    // Make the best token win by a margin so temperature 1e-3 is all but deterministic.
    auto best = std::max_element(logits.begin(), logits.end());
    *best += 0.1f;
    const int32_t expect = static_cast<int32_t>(best - logits.begin());
    EXPECT_EQ(sample_one(sampler, logits, greedy, rng), expect);
    EXPECT_EQ(sample_one(sampler, logits, top_k1, rng), expect);
    EXPECT_EQ(sample_one(sampler, logits, tiny_p, rng), expect);
    EXPECT_EQ(sample_one(sampler, logits, cold, rng), expect);
  }
}

// Tolerances: 20000 draws give a standard error of at most 0.0036 per frequency; 0.015 is > 4 sigma.
constexpr int kDraws = 20000;
constexpr double kTol = 0.015;

TEST(Sampler, TemperatureOneMatchesSoftmax) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  std::vector<float> logits;
  for (double q : probs) logits.push_back(static_cast<float>(std::log(q)) + 2.0f);
  const auto freq = frequencies(logits, SamplingParams{}, kDraws);
  for (size_t i = 0; i < probs.size(); ++i) EXPECT_NEAR(freq[i], probs[i], kTol) << "token " << i;
}

TEST(Sampler, TemperatureTwoFlattens) {
  // p_i proportional to exp(l_i / 2): with l = 2 log q this is q again.
  const std::vector<double> q = {0.1, 0.2, 0.3, 0.4};
  std::vector<float> logits;
  for (double v : q) logits.push_back(2.0f * static_cast<float>(std::log(v)));
  SamplingParams p;
  p.temperature = 2.0;
  const auto freq = frequencies(logits, p, kDraws);
  for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(freq[i], q[i], kTol) << "token " << i;
}

TEST(Sampler, TopKTopPAndMinPRenormalize) {
  const std::vector<double> probs = {0.1, 0.4, 0.3, 0.05, 0.15};
  std::vector<float> logits;
  for (double q : probs) logits.push_back(static_cast<float>(std::log(q)));
  SamplingParams top_k;
  top_k.top_k = 2;  // {1, 2}: 4:3
  auto f = frequencies(logits, top_k, kDraws);
  EXPECT_NEAR(f[1], 4.0 / 7.0, kTol);
  EXPECT_NEAR(f[2], 3.0 / 7.0, kTol);
  EXPECT_EQ(f[0] + f[3] + f[4], 0.0);

  SamplingParams top_p;
  top_p.top_p = 0.75;  // best-first 0.4, 0.3 (cum 0.7 < 0.75), 0.15 (cum 0.85): {1, 2, 4}
  f = frequencies(logits, top_p, kDraws);
  EXPECT_NEAR(f[1], 0.4 / 0.85, kTol);
  EXPECT_NEAR(f[2], 0.3 / 0.85, kTol);
  EXPECT_NEAR(f[4], 0.15 / 0.85, kTol);
  EXPECT_EQ(f[0] + f[3], 0.0);

  SamplingParams min_p;
  min_p.min_p = 0.5;  // keep p >= 0.5 * 0.4 = 0.2: {1, 2}
  f = frequencies(logits, min_p, kDraws);
  EXPECT_NEAR(f[1], 4.0 / 7.0, kTol);
  EXPECT_EQ(f[0] + f[3] + f[4], 0.0);

  SamplingParams k_then_p;
  k_then_p.top_k = 3;    // {1, 2, 4} renormalized: 0.47, 0.35, 0.18
  k_then_p.top_p = 0.5;  // 0.47 < 0.5, then 0.82: {1, 2}
  f = frequencies(logits, k_then_p, kDraws);
  EXPECT_NEAR(f[1], 4.0 / 7.0, kTol);
  EXPECT_EQ(f[0] + f[3] + f[4], 0.0);
}

TEST(Sampler, TopPOverLargeVocabSortsBeyondTheFirstPrefix) {
  // Flat logits: ties break by lowest id, so top_p 0.5 keeps ids [0, 2500).
  const std::vector<float> logits(5000, 0.0f);
  SamplingParams p;
  p.top_p = 0.5;
  Sampler sampler;
  SequenceRng rng(3);
  int32_t max_id = 0;
  for (int i = 0; i < 500; ++i) {
    const int32_t id = sample_one(sampler, logits, p, rng);
    ASSERT_LT(id, 2500);
    max_id = std::max(max_id, id);
  }
  EXPECT_GT(max_id, 2000);  // P(all 500 draws below 2000) = 0.8^500
}

TEST(Sampler, SeededDrawsDoNotDependOnTheBatch) {
  const int64_t vocab = 64;
  SamplingParams seeded;
  seeded.seed = 42;
  SamplingParams other;
  other.seed = 43;
  SamplingParams greedy;
  greedy.temperature = 0.0;
  Sampler sampler;
  const int num_steps = 30;
  // Alone.
  SequenceRng alone_rng(seeded.seed);
  std::vector<int32_t> alone;
  for (int s = 0; s < num_steps; ++s) {
    auto logits = random_logits(vocab, 100 + s);
    auto t = sampler.sample(logits.data(), 1, vocab, {SamplerRow{&seeded, nullptr, nullptr, &alone_rng}});
    ASSERT_TRUE(t.ok());
    alone.push_back((*t)[0].token_id);
  }
  // Third row of a batch with an unseeded neighbour, a greedy one and another seed.
  SequenceRng rng(seeded.seed), rng_other(other.seed), rng_random(-1);
  SamplingParams unseeded;
  std::vector<int32_t> batched, with_other_seed;
  for (int s = 0; s < num_steps; ++s) {
    std::vector<float> logits;
    for (int r = 0; r < 4; ++r) {
      auto row = random_logits(vocab, r == 2 || r == 3 ? 100 + s : 7 * s + r);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    auto t = sampler.sample(logits.data(), 4, vocab,
                            {SamplerRow{&unseeded, nullptr, nullptr, &rng_random}, SamplerRow{&greedy},
                             SamplerRow{&seeded, nullptr, nullptr, &rng},
                             SamplerRow{&other, nullptr, nullptr, &rng_other}});
    ASSERT_TRUE(t.ok()) << t.error().message;
    batched.push_back((*t)[2].token_id);
    with_other_seed.push_back((*t)[3].token_id);
  }
  EXPECT_EQ(alone, batched);
  EXPECT_NE(alone, with_other_seed);
}

TEST(Sampler, PenaltiesFollowTheFormulas) {
  // Checked through the greedy logprobs, which are log_softmax of the penalized logits.
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, 1.0f};
  const std::vector<int32_t> prompt = {0, 0};
  const std::vector<int32_t> output = {1, 3, 1};
  SamplingParams p;
  p.temperature = 0.0;
  p.logprobs = 5;
  p.repetition_penalty = 2.0;
  p.frequency_penalty = 0.5;
  p.presence_penalty = 0.25;
  // repetition (seen: 0, 1, 3): positive / 2, negative * 2; then output counts {1: 2, 3: 1}
  // lose frequency * count + presence.
  std::vector<float> expect = {2.0f / 2, -1.0f * 2 - (0.5f * 2 + 0.25f), 0.5f, 3.0f / 2 - (0.5f + 0.25f), 1.0f};
  const auto ref = log_softmax(expect);
  Sampler sampler;
  auto t = sampler.sample_row(logits.data(), logits.size(), SamplerRow{&p, &prompt, &output, nullptr});
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->token_id, 0);  // 1.0 ties token 4's 1.0: lowest id
  EXPECT_NEAR(t->logprob, ref[0], 1e-5);
  ASSERT_EQ(t->top_logprobs.size(), 5u);
  for (const auto& [id, lp] : t->top_logprobs) EXPECT_NEAR(lp, ref[id], 1e-5) << "token " << id;

  // Presence / frequency look at the output only: a prompt-only token keeps its logit.
  SamplingParams only_presence;
  only_presence.temperature = 0.0;
  only_presence.logprobs = 0;
  only_presence.presence_penalty = 2.0;
  const std::vector<float> flat = {1.0f, 1.0f, 0.0f};
  const std::vector<int32_t> prompt0 = {0};
  const std::vector<int32_t> output1 = {1, 1};
  t = sampler.sample_row(flat.data(), flat.size(), SamplerRow{&only_presence, &prompt0, &output1, nullptr});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token_id, 0);
  EXPECT_NEAR(t->logprob, log_softmax({1.0f, -1.0f, 0.0f})[0], 1e-5);
}

TEST(Sampler, LogprobIsAtTheTemperature) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  SamplingParams p;
  p.temperature = 2.0;
  p.logprobs = 0;
  Sampler sampler;
  SequenceRng rng(9);
  auto t = sampler.sample_row(logits.data(), logits.size(), SamplerRow{&p, nullptr, nullptr, &rng});
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->top_logprobs.empty());
  EXPECT_NEAR(t->logprob, log_softmax({0.0f, 0.5f, 1.0f})[t->token_id], 1e-5);
}

TEST(Sampler, BadInputsAreErrors) {
  Sampler sampler;
  SamplingParams p;
  SequenceRng rng(1);
  const std::vector<float> logits = {0.0f, 1.0f};
  const std::vector<int32_t> bad_ids = {2};
  SamplingParams penalised = p;  // the ids are read only by the penalties
  penalised.repetition_penalty = 1.5;
  auto r = sampler.sample_row(logits.data(), 2, SamplerRow{&penalised, &bad_ids, nullptr, &rng});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message.find("prompt token id 2"), std::string::npos) << r.error().message;
  penalised.repetition_penalty = 1.0;
  penalised.frequency_penalty = 0.5;
  r = sampler.sample_row(logits.data(), 2, SamplerRow{&penalised, nullptr, &bad_ids, &rng});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("output token id 2"), std::string::npos) << r.error().message;
  EXPECT_FALSE(sampler.sample_row(logits.data(), 2, SamplerRow{&p, nullptr, nullptr, nullptr}).ok());  // no rng
  EXPECT_FALSE(sampler.sample_row(logits.data(), 2, SamplerRow{}).ok());                                // no params
  const std::vector<float> nan_logits = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_FALSE(sampler.sample_row(nan_logits.data(), 2, SamplerRow{&p, nullptr, nullptr, &rng}).ok());
  const float ninf = -std::numeric_limits<float>::infinity();
  const std::vector<float> masked = {ninf, ninf};
  EXPECT_FALSE(sampler.sample_row(masked.data(), 2, SamplerRow{&p, nullptr, nullptr, &rng}).ok());
  auto batch = sampler.sample(logits.data(), 2, 1, {SamplerRow{&p, nullptr, nullptr, &rng}});
  EXPECT_FALSE(batch.ok());
  // A masked token (-inf) is never drawn.
  const std::vector<float> half = {ninf, 0.0f, ninf};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(sample_one(sampler, half, p, rng), 1);
}

TEST(Sampler, StopTokens) {
  SamplingParams p;
  p.stop_token_ids = {7};
  const std::vector<int32_t> eos = {2, 3};
  EXPECT_TRUE(is_stop_token(7, p, eos));
  EXPECT_TRUE(is_stop_token(3, p, eos));
  EXPECT_FALSE(is_stop_token(4, p, eos));
  p.ignore_eos = true;
  EXPECT_FALSE(is_stop_token(3, p, eos));
  EXPECT_TRUE(is_stop_token(7, p, eos));
}

}  // namespace
}  // namespace troupe
