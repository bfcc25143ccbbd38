// Every fixture under tests/fixtures/models against its transformers oracle: logits at every
// prompt position (max abs diff <= 1e-3, same argmax) and the 32-token greedy continuation.
// The oracle is transformers' from_pretrained(dtype=float32) of each saved checkpoint (RoPE in fp32).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "backends/cpu_backend.hpp"
#include "models/model_loader.hpp"
#include "engine/model_runner.hpp"
#include "runtime/safetensors_file.hpp"
#include "tests/unit/fixture_oracle.hpp"

namespace troupe {
namespace {


void check_fixtures(float tolerance, bool keep_bf16_weights = false) {
  const auto dirs = fixture_dirs();
  ASSERT_FALSE(dirs.empty()) << "no fixtures under tests/fixtures/models";
  CpuBackend backend(2, keep_bf16_weights);
  for (const auto& dir : dirs) {
    SCOPED_TRACE(dir);
    auto config = ModelConfig::load(dir);
    ASSERT_TRUE(config.ok()) << config.error().message;
    auto model = load_model(dir, backend, LayerRange{});
    ASSERT_TRUE(model.ok()) << model.error().message;
    const Oracle oracle = read_oracle(dir);
    auto logits_file = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
    ASSERT_TRUE(logits_file.ok()) << logits_file.error().message;
    ASSERT_EQ(oracle.prompts.size(), oracle.greedy.size());
    const int64_t vocab = model.value()->config().vocab_size;
    for (size_t i = 0; i < oracle.prompts.size(); ++i) {
      SCOPED_TRACE("prompt " + std::to_string(i));
      const auto& prompt = oracle.prompts[i];
      const TensorView* expected = logits_file.value()->find("logits." + std::to_string(i));
      ASSERT_NE(expected, nullptr);
      ASSERT_EQ(expected->shape, (std::vector<int64_t>{int64_t(prompt.size()), vocab}));
      ASSERT_EQ(expected->dtype, DType::f32);
      const float* want = static_cast<const float*>(expected->data);

      auto result = greedy_generate(*model.value(), backend, prompt, oracle.max_new_tokens, 16, true);
      ASSERT_TRUE(result.ok()) << result.error().message;
      ASSERT_EQ(result->prompt_logits.size(), prompt.size());
      float max_diff = 0.0f;
      for (size_t t = 0; t < prompt.size(); ++t) {
        const auto& got = result->prompt_logits[t];
        const float* row = want + int64_t(t) * vocab;
        for (int64_t v = 0; v < vocab; ++v) max_diff = std::max(max_diff, std::abs(got[size_t(v)] - row[v]));
        const auto got_argmax = std::max_element(got.begin(), got.end()) - got.begin();
        const auto want_argmax = std::max_element(row, row + vocab) - row;
        EXPECT_EQ(got_argmax, want_argmax) << "position " << t;
      }
      EXPECT_LE(max_diff, tolerance);
      EXPECT_EQ(result->tokens, oracle.greedy[i]);
      std::printf("%s prompt %zu: max |logit diff| %.2e\n", dir.substr(dir.rfind('/') + 1).c_str(), i, double(max_diff));
    }
  }
}

TEST(LlamaModelFixture, LogitsAndGreedyMatchTransformers) { check_fixtures(1e-3f); }

TEST(LlamaModelFixture, KeptBf16WeightsMatchTransformers) { check_fixtures(1e-3f, true); }

// Two stages loaded from the (sharded) files, hidden states handed over, give the oracle's logits.
TEST(LlamaModelFixture, TwoStagesFromFilesMatchTheOracle) {
  const auto dirs = fixture_dirs();
  ASSERT_FALSE(dirs.empty()) << "no fixtures under tests/fixtures/models";
  CpuBackend backend(2);
  for (const auto& dir : dirs) {
    SCOPED_TRACE(dir);
    auto config = ModelConfig::load(dir);
    ASSERT_TRUE(config.ok());
    auto first = load_model(dir, backend, LayerRange{0, 1});
    auto last = load_model(dir, backend, LayerRange{1, -1});
    ASSERT_TRUE(first.ok() && last.ok());
    const Oracle oracle = read_oracle(dir);
    const auto& prompt = oracle.prompts.back();
    // Blocks of 16 in reverse order, so the table is not the identity.
    const int64_t num_blocks = std::max<int64_t>(4, (int64_t(prompt.size()) + 15) / 16);
    std::vector<int32_t> table;
    for (int64_t b = num_blocks - 1; b >= 0; --b) table.push_back(int32_t(b));
    auto first_cache = backend.create_kv_cache(first.value()->kv_cache_spec(num_blocks, 16));
    auto last_cache = backend.create_kv_cache(last.value()->kv_cache_spec(num_blocks, 16));
    ASSERT_TRUE(first_cache.ok() && last_cache.ok());
    ForwardBatch batch;
    batch.token_ids = prompt;
    for (size_t i = 0; i < prompt.size(); ++i) batch.positions.push_back(int32_t(i));
    batch.seqs.push_back({int32_t(prompt.size()), int32_t(prompt.size()), &table, true});
    auto hidden = first.value()->forward(batch, first_cache.value(), LogitsMode::all_tokens);
    ASSERT_TRUE(hidden.ok());
    batch.hidden_states = hidden.value();
    auto logits = last.value()->forward(batch, last_cache.value(), LogitsMode::all_tokens);
    ASSERT_TRUE(logits.ok()) << logits.error().message;
    auto file = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
    ASSERT_TRUE(file.ok());
    const TensorView* want = file.value()->find("logits." + std::to_string(oracle.prompts.size() - 1));
    ASSERT_NE(want, nullptr);
    ASSERT_EQ(logits->numel(), want->numel());
    float max_diff = 0.0f;
    for (int64_t i = 0; i < want->numel(); ++i) {
      max_diff = std::max(max_diff, std::abs(logits->data<float>()[i] - static_cast<const float*>(want->data)[i]));
    }
    EXPECT_LE(max_diff, 1e-3f);
  }
}

}  // namespace
}  // namespace troupe
